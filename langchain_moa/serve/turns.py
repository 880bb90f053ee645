"""A tool loop's references, kept between its requests: ``fanout: per_turn`` over HTTP.

``ChatMoA(fanout="per_turn")`` runs its proposers once a user turn: a tool
loop's later steps reuse the references that the turn's first answer
carries in its ``response_metadata``. Over HTTP that metadata is lost: a
client sends the answer back as OpenAI's assistant message (or Responses
items), tool calls and text only. So the server keeps it here, in memory,
for the answers that called tools: keyed by a digest of the model id and
the whole conversation up to and with the answer, so that only a request
that continues that very conversation finds it (one that could write the
same conversation could have asked for the same references anyway).

Bounded (``MAX_TURNS`` answers, each for ``TURN_TTL_S``): a step that finds
nothing, on another instance or after a restart, runs the proposers again,
as ``every_call`` would. Nothing else is kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from cachetools import TTLCache
from langchain_core.messages import AIMessage, BaseMessage

MAX_TURNS = 512
"""Answers kept at once; the oldest goes first."""
TURN_TTL_S = 3600.0
"""How long an answer's references are kept: a tool loop's steps come within it."""

KEPT = ("model_name", "model_provider", "layers", "dropped_references")
"""What of an answer's ``response_metadata`` ``ChatMoA`` reads back (``turn_references``)."""


def _canonical(message: BaseMessage) -> dict[str, Any]:
    """What a client sends back of a message, alike whichever API and client it came through."""
    calls = getattr(message, "tool_calls", None) or []
    return {
        # A streamed answer is a chunk; what the client sends back is a message.
        "type": "ai" if isinstance(message, AIMessage) else message.type,
        # An assistant's text only: clients send its content back as null, "" or parts.
        "content": message.text if isinstance(message, AIMessage) else message.content,
        "tool_calls": [[call["name"], call["args"], call.get("id")] for call in calls],
        "tool_call_id": getattr(message, "tool_call_id", None),
    }


def _digest(model: str, messages: Sequence[BaseMessage]) -> str:
    text = json.dumps(
        [model, [_canonical(m) for m in messages]], sort_keys=True, ensure_ascii=False, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


class TurnReferences:
    """The metadata of answers that called tools, by conversation; see the module."""

    def __init__(self, max_turns: int = MAX_TURNS, ttl_s: float = TURN_TTL_S) -> None:
        """An empty memory (one event loop uses it: no lock)."""
        self._kept: TTLCache[str, dict[str, Any]] = TTLCache(maxsize=max_turns, ttl=ttl_s)

    def __len__(self) -> int:
        """Answers kept now."""
        return len(self._kept)

    def remember(self, model: str, messages: Sequence[BaseMessage], answer: BaseMessage) -> None:
        """Keep ``answer``'s references if it called tools and its proposers ran."""
        metadata = answer.response_metadata
        if not getattr(answer, "tool_calls", None) or metadata.get("reused_references"):
            return
        self._kept[_digest(model, [*messages, answer])] = {k: metadata.get(k) for k in KEPT}

    def recall(self, model: str, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        """``messages`` with the metadata kept for each earlier answer given back to it."""
        recalled = list(messages)
        for index, message in enumerate(messages):
            if not (isinstance(message, AIMessage) and message.tool_calls):
                continue
            kept = self._kept.get(_digest(model, messages[: index + 1]))
            if kept is not None:
                recalled[index] = message.model_copy(update={"response_metadata": kept})
        return recalled
