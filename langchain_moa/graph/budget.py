"""What a model is sent must fit it: its context window, and the kinds of input it takes.

References grow with every layer; a model that reads them all can be sent
more than it takes. Instead of an oversize request, the references are
shortened to fit, each to the same share of its length and keeping its start
(where answers put their point), and the call's record says so.

Images and other non-text parts go only to models whose profile says they
take images; the others get a placeholder in their place, and the call's
record says how many were left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

SHORTENED = " [shortened to fit the context window]"
"""Put after a reference that was cut."""

_CHARS_PER_TOKEN = 3
"""A cautious estimate where a model cannot count: English runs near 4."""

_ATTEMPTS = 6


def context_budget(model: BaseChatModel, max_input_tokens: int | None) -> int | None:
    """How many input tokens ``model`` takes: the setting, else its profile's; None if unknown."""
    if max_input_tokens is not None:
        return max_input_tokens
    value = (getattr(model, "profile", None) or {}).get("max_input_tokens")
    return value if isinstance(value, int) and value > 0 else None


OMITTED = "[an image was here: this model reads text only]"
"""What a text-only model reads in place of a non-text part."""


def text_only(
    model: BaseChatModel, messages: Sequence[BaseMessage]
) -> tuple[list[BaseMessage], str | None]:
    """``messages`` as ``model`` can read them, and a note when parts were left out.

    A model reads non-text parts only if its ``profile`` says ``image_inputs``.
    """
    if (getattr(model, "profile", None) or {}).get("image_inputs"):
        return list(messages), None
    dropped, readable = 0, []
    for message in messages:
        if isinstance(message.content, str):
            readable.append(message)
            continue
        parts: list[str | dict] = []
        for part in message.content:
            if isinstance(part, str) or part.get("type") == "text":
                parts.append(part)
            else:
                dropped += 1
                parts.append({"type": "text", "text": OMITTED})
        readable.append(message.model_copy(update={"content": parts}))
    if not dropped:
        return list(messages), None
    noun = "part" if dropped == 1 else "parts"
    return readable, f"{dropped} non-text {noun} left out (the model reads text only)"


def _chars(messages: Sequence[BaseMessage]) -> int:
    return sum(len(message.text) for message in messages)


def count_tokens(model: BaseChatModel, messages: Sequence[BaseMessage]) -> int:
    """``messages``' tokens as ``model`` counts them, or a cautious estimate."""
    try:
        return model.get_num_tokens_from_messages(list(messages))
    except Exception:  # noqa: BLE001 - counting is best effort: estimate instead
        # Some counters need a download (tiktoken's files) or a server.
        return math.ceil(_chars(messages) / _CHARS_PER_TOKEN) + 4 * len(messages)


def fit_references(
    model: BaseChatModel,
    budget: int | None,
    references: Sequence[str],
    render: Callable[[list[str]], list[BaseMessage]],
) -> tuple[list[BaseMessage], str | None]:
    """The messages for ``model``, references shortened if they would overflow ``budget``.

    Args:
        model: The model that is sent them (it counts the tokens).
        budget: Its input tokens; None sends the messages as they are.
        references: The references the messages show.
        render: Makes the messages from (possibly shortened) references.

    Returns:
        The messages, and a note for the call's record when references were
        shortened (or when the conversation alone overflows the budget).
    """
    messages = render(list(references))
    # A token is at least a character: short inputs need no counting.
    if budget is None or not references or _chars(messages) <= budget:
        return messages, None
    used = count_tokens(model, messages)
    if used <= budget:
        return messages, None
    reference_chars = sum(len(text) for text in references)
    # The references' share of the tokens, as of the characters.
    reference_tokens = used * reference_chars / max(1, _chars(messages))
    keep = max(0.0, (reference_tokens - (used - budget)) / max(1.0, reference_tokens))
    for _ in range(_ATTEMPTS):
        keep *= 0.95  # counts of cut text are not exact: leave room
        shortened = [_cut(text, keep) for text in references]
        messages = render(shortened)
        used = count_tokens(model, messages)
        if used <= budget:
            note = (
                f"references shortened to {keep:.0%} of their length to fit {budget} input tokens"
            )
            return messages, note
        keep *= 0.8
    note = (
        f"the input needs {used} tokens, more than the model's {budget}, even with "
        "its references cut to nothing"
    )
    return render([_cut(text, 0.0) for text in references]), note


def _cut(text: str, keep: float) -> str:
    length = int(len(text) * keep)
    return text if length >= len(text) else text[:length].rstrip() + SHORTENED
