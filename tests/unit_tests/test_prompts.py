"""The exact text each layer's models receive, against the paper's prompt."""

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate

from langchain_moa import AGGREGATE_AND_SYNTHESIZE_PROMPT as EXPORTED_PROMPT
from langchain_moa import ChatMoA
from langchain_moa.graph.prompts import (
    AGGREGATE_AND_SYNTHESIZE_PROMPT,
    PromptInput,
    inject_references,
    render_prompt,
)
from tests.unit_tests.scripted import ScriptedChatModel

# Verbatim from the paper (and the method page); kept here, not imported, so the
# test fails if the package's copy drifts.
PAPER_PROMPT = (
    "You have been provided with a set of responses from various open-source models "
    "to the latest user query. Your task is to synthesize these responses into a single, "
    "high-quality response. It is crucial to critically evaluate the information provided "
    "in these responses, recognizing that some of it may be biased or incorrect. Your "
    "response should not simply replicate the given answers but should offer a refined, "
    "accurate, and comprehensive reply to the instruction. Ensure your response is "
    "well-structured, coherent, and adheres to the highest standards of accuracy and "
    "reliability.\n\nResponses from models:"
)


def test_default_prompt_is_the_papers() -> None:
    assert AGGREGATE_AND_SYNTHESIZE_PROMPT == PAPER_PROMPT
    assert EXPORTED_PROMPT == PAPER_PROMPT


def _plain(messages):
    """Messages without ids (the graph gives conversation messages ids)."""
    return [m.model_copy(update={"id": None}) for m in messages]


def _stack():
    layer1 = [ScriptedChatModel(model_name=f"a{i}", reply=f"first {i}") for i in (1, 2)]
    layer2 = [ScriptedChatModel(model_name=f"b{i}", reply=f"second {i}") for i in (1, 2)]
    aggregator = ScriptedChatModel(model_name="agg", reply="final")
    return layer1, layer2, aggregator


CONVERSATION = [
    HumanMessage("What is MoA?"),
    AIMessage("Mixture-of-Agents."),
    HumanMessage("Explain it in one line."),
]


def test_messages_per_layer_without_system_message() -> None:
    layer1, layer2, aggregator = _stack()
    ChatMoA(proposer_layers=[layer1, layer2], aggregator=aggregator).invoke(CONVERSATION)

    for model in layer1:
        assert _plain(model.log[0]["messages"]) == CONVERSATION
    expected_layer2 = SystemMessage(PAPER_PROMPT + "\n1. first 1\n2. first 2")
    for model in layer2:
        assert _plain(model.log[0]["messages"]) == [expected_layer2, *CONVERSATION]
    expected_final = SystemMessage(PAPER_PROMPT + "\n1. second 1\n2. second 2")
    assert _plain(aggregator.log[0]["messages"]) == [expected_final, *CONVERSATION]


def test_messages_per_layer_with_system_message() -> None:
    layer1, layer2, aggregator = _stack()
    conversation = [SystemMessage("Answer briefly."), *CONVERSATION]
    ChatMoA(proposer_layers=[layer1, layer2], aggregator=aggregator).invoke(conversation)

    for model in layer1:
        assert _plain(model.log[0]["messages"]) == conversation
    layer2_system = "Answer briefly.\n\n" + PAPER_PROMPT + "\n1. first 1\n2. first 2"
    for model in layer2:
        assert _plain(model.log[0]["messages"]) == [SystemMessage(layer2_system), *CONVERSATION]
    final_system = "Answer briefly.\n\n" + PAPER_PROMPT + "\n1. second 1\n2. second 2"
    assert _plain(aggregator.log[0]["messages"]) == [SystemMessage(final_system), *CONVERSATION]


def test_two_layer_stack_aggregator_sees_layer_one() -> None:
    layer1, _, aggregator = _stack()
    ChatMoA(proposers=layer1, aggregator=aggregator, layers=2).invoke("Hi")
    expected = SystemMessage(PAPER_PROMPT + "\n1. first 1\n2. first 2")
    assert _plain(aggregator.log[0]["messages"]) == [expected, HumanMessage("Hi")]


def test_replaced_prompt_is_used_everywhere_after_layer_one() -> None:
    layer1, layer2, aggregator = _stack()
    ChatMoA(proposer_layers=[layer1, layer2], aggregator=aggregator, prompt="Improve on:").invoke(
        "Hi"
    )
    assert _plain(layer1[0].log[0]["messages"]) == [HumanMessage("Hi")]
    assert layer2[0].log[0]["messages"][0] == SystemMessage("Improve on:\n1. first 1\n2. first 2")
    assert aggregator.log[0]["messages"][0] == SystemMessage(
        "Improve on:\n1. second 1\n2. second 2"
    )


def test_inject_references_leaves_input_untouched() -> None:
    conversation = [SystemMessage("s"), HumanMessage("q")]
    out = inject_references(conversation, ["r"], "P")
    assert conversation == [SystemMessage("s"), HumanMessage("q")]
    assert out == [SystemMessage("s\n\nP\n1. r"), HumanMessage("q")]


def test_inject_references_system_message_with_content_blocks() -> None:
    system = SystemMessage(content=[{"type": "text", "text": "s"}])
    out = inject_references([system, HumanMessage("q")], ["r"], "P")
    assert out[0].content == [
        {"type": "text", "text": "s"},
        {"type": "text", "text": "\n\nP\n1. r"},
    ]


def test_no_references_no_change() -> None:
    assert inject_references([HumanMessage("q")], [], "P") == [HumanMessage("q")]


# render_prompt: what a model of a layer is sent, for every kind of prompt.


def test_render_prompt_without_references_sends_the_conversation() -> None:
    def never(given):
        raise AssertionError("a prompt for layer 1")

    for prompt in ("P", never, ChatPromptTemplate.from_messages([("human", "x")])):
        assert render_prompt(prompt, CONVERSATION, [], 1) == CONVERSATION


def test_render_prompt_with_text_is_the_papers_injection() -> None:
    assert render_prompt("P", CONVERSATION, ["r1", "r2"], 2) == [
        SystemMessage("P\n1. r1\n2. r2"),
        *CONVERSATION,
    ]


def test_render_prompt_calls_a_callable_with_a_prompt_input() -> None:
    seen: list[PromptInput] = []

    def prompt(given: PromptInput):
        seen.append(given)
        return [SystemMessage(f"Layer {given['layer']}:\n{given['numbered_references']}")]

    out = render_prompt(prompt, CONVERSATION, ["r1", "r2"], 3)
    assert out == [SystemMessage("Layer 3:\n1. r1\n2. r2")]
    assert seen == [
        {
            "messages": CONVERSATION,
            "references": ["r1", "r2"],
            "numbered_references": "1. r1\n2. r2",
            "layer": 3,
        }
    ]


def test_render_prompt_takes_a_prompt_template_and_its_prompt_value() -> None:
    template = ChatPromptTemplate.from_messages(
        [("system", "Refs:\n{numbered_references}"), ("placeholder", "{messages}")]
    )
    out = render_prompt(template, CONVERSATION, ["r1"], 2)
    assert out == [SystemMessage("Refs:\n1. r1"), *CONVERSATION]


@pytest.mark.parametrize("result", ["text", [HumanMessage("q"), "not a message"], None])
def test_a_prompt_that_returns_no_messages_is_an_error(result) -> None:
    with pytest.raises(TypeError, match="the prompt must return a list of messages or a Prompt"):
        render_prompt(lambda given: result, CONVERSATION, ["r"], 2)


def test_a_callable_prompt_reaches_later_layers_and_the_aggregator() -> None:
    layer1, layer2, aggregator = _stack()
    seen = []

    def prompt(given: PromptInput):
        seen.append((given["layer"], given["references"]))
        return [SystemMessage(f"L{given['layer']} {given['references']}"), *given["messages"]]

    moa = ChatMoA(proposer_layers=[layer1, layer2], aggregator=aggregator, prompt=prompt)
    assert moa.invoke("Hi").content == "final"
    assert _plain(layer1[0].log[0]["messages"]) == [HumanMessage("Hi")]
    for model in layer2:
        assert _plain(model.log[0]["messages"]) == [
            SystemMessage("L2 ['first 1', 'first 2']"),
            HumanMessage("Hi"),
        ]
    assert _plain(aggregator.log[0]["messages"]) == [
        SystemMessage("L3 ['second 1', 'second 2']"),
        HumanMessage("Hi"),
    ]
    assert sorted(seen) == [
        (2, ["first 1", "first 2"]),
        (2, ["first 1", "first 2"]),
        (3, ["second 1", "second 2"]),
    ]


def test_a_prompt_template_reaches_later_layers_and_the_aggregator() -> None:
    layer1, layer2, aggregator = _stack()
    template = ChatPromptTemplate.from_messages(
        [
            ("system", "Layer {layer} reads:\n{numbered_references}"),
            ("placeholder", "{messages}"),
        ]
    )
    ChatMoA(proposer_layers=[layer1, layer2], aggregator=aggregator, prompt=template).invoke(
        CONVERSATION
    )
    for model in layer1:
        assert _plain(model.log[0]["messages"]) == CONVERSATION
    for model in layer2:
        assert _plain(model.log[0]["messages"]) == [
            SystemMessage("Layer 2 reads:\n1. first 1\n2. first 2"),
            *CONVERSATION,
        ]
    assert _plain(aggregator.log[0]["messages"]) == [
        SystemMessage("Layer 3 reads:\n1. second 1\n2. second 2"),
        *CONVERSATION,
    ]
