import pytest

from langchain_moa import ChatMoA
from langchain_moa.eval import gsm8k
from tests.fixtures import FIXTURES
from tests.unit_tests.scripted import ScriptedChatModel


def test_targets_of_the_real_data() -> None:
    problems = gsm8k.load_problems()
    assert len(problems) == 1319
    assert problems[0]["target"] == "18"
    assert all(p["target"] for p in problems)
    assert gsm8k.load_problems(FIXTURES) == problems[:5]


def test_a_data_folder_without_the_file_is_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"gsm8k/test\.jsonl"):
        gsm8k.load_problems(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She makes 9 * 2 = $18.\n#### 18", "18"),
        ("So the answer is $1,250.00 in total.", "1250"),
        ("#### 5\nActually, 7 eggs remain.", "5"),
        ("The loss is -3.5 dollars", "-3.5"),
        ("I cannot tell.", None),
    ],
)
def test_extract_answer(text, expected) -> None:
    assert gsm8k.extract_answer(text) == expected


def test_target_without_marker_is_an_error() -> None:
    with pytest.raises(ValueError, match="without '#### <number>'"):
        gsm8k.target_number("The answer is 4.")


async def test_run_scores_and_resumes(tmp_path) -> None:
    def answer(messages):
        question = messages[-1].content
        return "#### 18" if question.startswith("Janet") else "no idea"

    model = ScriptedChatModel(model_name="m", reply=answer)
    metrics = await gsm8k.run(model, FIXTURES, tmp_path, limit=3)
    generation = metrics.pop("generation")
    assert metrics == {"accuracy": 100 / 3, "n_correct": 1, "n_total": 3, "n_no_number": 2}
    assert generation["usage"]["m"]["calls"] == 3
    assert generation["usage"]["m"]["output_tokens"] == 2 + 2 + 2
    assert len(model.log) == 3
    assert gsm8k.INSTRUCTION in model.log[0]["messages"][0].content
    again = await gsm8k.run(model, FIXTURES, tmp_path, limit=3)
    assert again == {**metrics, "generation": generation}
    assert len(model.log) == 3  # nothing asked twice


async def test_moa_records_carry_layers_usage_and_latency(tmp_path) -> None:
    proposer = ScriptedChatModel(model_name="p", reply="#### 18")
    moa = ChatMoA(proposers=[proposer, proposer], aggregator=proposer, layers=2)
    await gsm8k.run(moa, None, tmp_path, limit=1)
    record = gsm8k.JsonlStore(tmp_path / "answers.jsonl", "id").records()[0]
    assert record["correct"] is True
    assert [len(layer) for layer in record["layers"]] == [2, 1]
    assert record["usage"]["output_tokens"] == 3 * 2
    assert record["latency_s"] > 0
