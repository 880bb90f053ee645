"""moa chat's policy and strategy flags are made of the stack spec's fields."""

import argparse

import pytest

from langchain_moa import cli
from langchain_moa.cli import chat
from langchain_moa.cli.fields import add_field_flag, field_options, help_of
from langchain_moa.stacks import StackSpec


@pytest.mark.parametrize("name", chat.POLICY_FLAGS)
def test_each_flag_is_its_field(name: str) -> None:
    flag, options = field_options(name)
    field = StackSpec.model_fields[name]
    assert options["dest"] == name
    assert options["help"].startswith(help_of(field).split(" (default")[0][:40])
    assert field.description  # the docstring the help is made of
    assert flag in cli._parser()._subparsers._group_actions[0].choices["chat"].format_help()


def test_types_and_choices_come_from_the_annotations() -> None:
    assert field_options("timeout_s")[1]["type"] is float
    assert field_options("max_input_tokens")[1]["type"] is int
    assert field_options("deadline_after")[1]["choices"] == ("start", "quorum")
    assert field_options("reference_filter")[1]["choices"] == ("cluster",)
    assert field_options("best_proposer_fallback")[1]["action"] == "store_true"
    assert field_options("fallbacks") == (
        "--fallback",
        {**field_options("fallbacks")[1], "action": "append", "metavar": "PROVIDER:MODEL"},
    )


def test_a_flag_s_value_is_checked_by_the_spec_as_a_file_s_is() -> None:
    parser = argparse.ArgumentParser()
    add_field_flag(parser, "deadline_s")
    args = parser.parse_args(["--deadline-s", "-1"])
    with pytest.raises(ValueError, match="deadline_s: must be more than 0"):
        StackSpec(proposers=["openai:a"], aggregator="openai:a", deadline_s=args.deadline_s)


def test_a_field_no_flag_can_be_made_of_says_so() -> None:
    with pytest.raises(TypeError, match="'prices'"):
        field_options("prices")
