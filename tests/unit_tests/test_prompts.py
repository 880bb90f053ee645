"""The exact text each layer's models receive, against the paper's prompt."""

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from langchain_moa import ChatMoA
from langchain_moa.prompts import AGGREGATE_AND_SYNTHESIZE_PROMPT, inject_references
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
    ChatMoA(layers=[layer1, layer2], aggregator=aggregator).invoke(CONVERSATION)

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
    ChatMoA(layers=[layer1, layer2], aggregator=aggregator).invoke(conversation)

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
    ChatMoA(layers=[layer1, layer2], aggregator=aggregator, prompt="Improve on:").invoke("Hi")
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
