"""The aggregate-and-synthesize prompt and how references reach a model.

Both follow the paper's reference code exactly, so results stay comparable
with the published ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, SystemMessage

AGGREGATE_AND_SYNTHESIZE_PROMPT = (
    "You have been provided with a set of responses from various open-source "
    "models to the latest user query. Your task is to synthesize these responses "
    "into a single, high-quality response. It is crucial to critically evaluate "
    "the information provided in these responses, recognizing that some of it may "
    "be biased or incorrect. Your response should not simply replicate the given "
    "answers but should offer a refined, accurate, and comprehensive reply to the "
    "instruction. Ensure your response is well-structured, coherent, and adheres "
    "to the highest standards of accuracy and reliability.\n\n"
    "Responses from models:"
)
"""The paper's aggregate-and-synthesize prompt, verbatim (Wang et al., 2024)."""


RANK_PROMPT = (
    "You have been provided with a set of responses from various open-source "
    "models to the latest user query. Your task is to select the single best "
    "response. It is crucial to critically evaluate the information provided in "
    "these responses, recognizing that some of it may be biased or incorrect. "
    "Reply with the number of the best response and nothing else.\n\n"
    "Responses from models:"
)
"""The LLM-ranker baseline's prompt: pick one response by number instead of
writing a new one (the paper describes the baseline but prints no prompt)."""


def format_references(prompt: str, references: Sequence[str]) -> str:
    """Return ``prompt`` followed by the references numbered ``1.``, ``2.``, ...

    Model names are left out on purpose: the paper's aggregator judges the
    answers, not who wrote them.
    """
    return prompt + "".join(
        f"\n{number}. {text}" for number, text in enumerate(references, start=1)
    )


def inject_references(
    messages: Sequence[BaseMessage],
    references: Sequence[str],
    prompt: str = AGGREGATE_AND_SYNTHESIZE_PROMPT,
) -> list[BaseMessage]:
    """Put the previous layer's references into the system message.

    As in the reference code, the block is appended after a blank line to a
    leading system message, or becomes a new first system message. With no
    references (layer 1) the conversation is returned unchanged.

    Args:
        messages: The whole conversation; it is not modified.
        references: The previous layer's response texts, in proposer order.
        prompt: The text put before the numbered references.

    Returns:
        A new list of messages.
    """
    if not references:
        return list(messages)
    block = format_references(prompt, references)
    if messages and isinstance(messages[0], SystemMessage):
        first = messages[0]
        content: str | list[str | dict]
        if isinstance(first.content, str):
            content = f"{first.content}\n\n{block}"
        else:
            content = [*first.content, {"type": "text", "text": f"\n\n{block}"}]
        return [first.model_copy(update={"content": content}), *messages[1:]]
    return [SystemMessage(content=block), *messages]
