"""The graph's state, its input and output schemas, its events and call records."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, NotRequired, cast

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, ChatMessage
from langgraph.graph import add_messages
from typing_extensions import TypedDict  # pydantic (Studio schemas) needs it on 3.11

from langchain_moa.accounting import Accounting, ModelCall, account


class MoAInput(TypedDict):
    """What a caller gives the graph: the conversation, and tools when bound."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation every model sees; the answer is appended to it."""
    tools: NotRequired[list[dict[str, Any]]]
    """Tools (OpenAI format) bound to the aggregator; proposers read them as text."""
    tool_choice: NotRequired[Any]
    """Deprecated: give the aggregator's ``tool_choice`` with its other call options,
    in ``configurable["moa_aggregator_kwargs"]``; read from here when that has none."""
    reuse: NotRequired[Reuse | None]
    """The turn's references, when they exist already: the run goes straight to
    the aggregator (``ChatMoA``'s ``fanout="per_turn"``)."""


class Reuse(TypedDict):
    """References a run reuses instead of running the proposers (``fanout="per_turn"``)."""

    turn: int
    """The run they are for (``turn``: the conversation's length); another run ignores them."""
    references: list[str]
    nodes: list[str]
    """The node that wrote each reference."""


class Dropped(TypedDict):
    """A reference a join left out (``reference_filter``)."""

    turn: int
    layer: int
    node: str
    """The proposer whose answer was left out."""
    why: str


class EarlyStopped(TypedDict):
    """Where a run ended its proposer layers early, because a layer's answers agreed."""

    turn: int
    layer: int
    """The last proposer layer that ran."""
    detail: str
    """Why they agree, e.g. ``3 of 3 final answers equal (18)``."""
    score: float | None
    """The agreement's measure: the share agreeing, or the least cosine similarity."""
    calls_saved: int
    """Proposer calls of the layers that did not run."""
    tokens_saved: int | None
    """An estimate: the stopping layer's tokens per call times ``calls_saved``
    (the skipped layers would also have read references: a lower bound)."""


class Ranking(TypedDict):
    """The peer review's aggregate ranking (``rank-then-synthesize``)."""

    turn: int
    order: list[str]
    """The reviewed answers' nodes, best first."""
    mean_position: dict[str, float]
    """Each answer's mean place in the rankings that named it (1 is best)."""
    rankings: int
    """How many reviewers' rankings could be read."""


class MoAOutput(TypedDict):
    """What the graph returns: the conversation with the answer, and every call."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation, the answer last."""
    answer: AIMessage
    """The final answer (the aggregator's message)."""
    calls: Annotated[list[ModelCall], operator.add]
    """Every model call's record, of every run on this state (see ``get_calls``)."""
    dropped: NotRequired[Annotated[list[Dropped], operator.add]]
    """References the joins left out (``reference_filter``), of every run on this state."""
    reused: NotRequired[bool]
    """Whether the last run reused its turn's references instead of proposing."""
    stopped: NotRequired[EarlyStopped | None]
    """Where the last run stopped early (``early_stop``), None when it ran every layer."""
    ranking: NotRequired[Ranking | None]
    """The last run's peer-review ranking (``rank-then-synthesize``)."""
    shuffle_seed: NotRequired[int | None]
    """The seed the last run's reference orders were drawn with (``reference_order=
    "shuffle"``); give it as ``configurable["moa_shuffle_seed"]`` to replay them."""


class MoAState(MoAInput):
    """The whole state of a MoA conversation (one run per user turn)."""

    calls: Annotated[list[ModelCall], operator.add]
    """Every model call, in completion order, of every run on this state."""
    run: NotRequired[str]
    """This run's key for the layer clocks its calls share in this process (``limits``).

    Not a second name for the run: what a run leaves in the state names it by its
    ``turn``, which a person can read and a resumed or replayed run keeps. The turn
    cannot key the clocks: two threads' runs of one graph may answer conversations
    of the same length at once."""
    reused: NotRequired[bool]
    """Whether this run reuses the turn's references (``reuse``) instead of proposing."""
    references: NotRequired[list[str]]
    """The last joined layer's successful response texts, in proposer order."""
    reference_nodes: NotRequired[list[str]]
    """The node that wrote each of ``references``."""
    dropped: NotRequired[Annotated[list[Dropped], operator.add]]
    """References the joins left out, of every run on this state."""
    answer: NotRequired[AIMessage]
    """The aggregator's message."""
    stopped: NotRequired[EarlyStopped | None]
    """Set by the join of the layer whose answers agreed (``early_stop``)."""
    ranking: NotRequired[Ranking | None]
    """Set by the review's join (``rank-then-synthesize``)."""
    shuffle_seed: NotRequired[int | None]
    """This run's seed for reference orders (``reference_order="shuffle"``)."""


STREAM_ANSWER = "moa_stream_answer"
"""``configurable`` key: when true, the aggregator streams its answer as
custom stream events (``{"event": ANSWER_CHUNK, "chunk": AIMessageChunk}``)."""

SHUFFLE_SEED = "moa_shuffle_seed"
"""``configurable`` key: the seed of a run's reference orders, to replay a shuffled run."""

AGGREGATOR_KWARGS = "moa_aggregator_kwargs"
"""``configurable`` key: call options for the aggregator only (``stop``, ``tool_choice``...).

The one channel for them: the state holds what every node reads (the
conversation, the tools), the config how the answer's call is made."""

ANSWER_CHUNK = "moa_answer_chunk"
"""``event`` value of a custom stream event that carries an answer token."""


def carries_answer(chunk: BaseMessage) -> bool:
    """Whether a streamed chunk holds part of the answer: text or a tool call.

    OpenAI-compatible servers send a role-only, empty chunk first: no token yet.
    """
    return bool(chunk.content or getattr(chunk, "tool_call_chunks", None))


CUT = frozenset({"length", "max_tokens"})
"""Finish reasons that say a model's token limit cut its reply (OpenAI's, Anthropic's)."""


def finish_reason(message: BaseMessage | None) -> str | None:
    """Why the model that wrote ``message`` stopped, as its provider said (None if unsaid)."""
    if message is None:
        return None
    metadata = message.response_metadata
    reason = metadata.get("finish_reason") or metadata.get("stop_reason")
    return reason if isinstance(reason, str) else None


def was_cut(message: BaseMessage | None) -> bool:
    """Whether the provider said its token limit cut ``message`` (where it said anything)."""
    return finish_reason(message) in CUT


CALL_START = "moa_call_start"
"""Custom event: a model call begins (``node``, ``layer``, ``model``)."""
CALL_END = "moa_call_end"
"""Custom event: a model call finished; the data is its `ModelCall` record."""
CALL_ERROR = "moa_call_error"
"""Custom event: a proposer failed; the data is its record, ``error`` set."""

AGGREGATOR_NODE = "aggregator"
"""Name of the final node."""
BEGIN_NODE = "begin"
"""Name of the first node: it checks the conversation and names the run."""


def is_answer_node(node: str) -> bool:
    """Whether ``node`` writes the answer: the aggregator, its fallbacks, its steps.

    A call event's ``node`` is ``aggregator``, ``aggregator/fallback-N`` (a fallback
    model's call) or ``aggregator/step-N`` (a staircase or Self-MoA-Seq step).
    """
    return node == AGGREGATOR_NODE or node.startswith(f"{AGGREGATOR_NODE}/")


def role(message: Any) -> str | None:
    """``"system"``, ``"human"``, ``"ai"``..., with a ``ChatMessage``'s role read the same way."""
    if not isinstance(message, BaseMessage):
        return None
    if isinstance(message, ChatMessage):
        return {"assistant": "ai", "user": "human", "developer": "system"}.get(
            message.role, message.role
        )
    return message.type


def check_conversation(messages: Sequence[Any]) -> None:
    """Refuse a conversation no model can answer, before any call.

    Raises:
        ValueError: it is empty, holds only system messages, or ends with the
            assistant's message (there is nothing to answer).
    """
    if not messages:
        msg = "the conversation is empty: give at least one user message"
        raise ValueError(msg)
    kinds = [role(message) for message in messages]
    if all(kind == "system" for kind in kinds):
        msg = "the conversation holds only a system message: give a user message to answer"
        raise ValueError(msg)
    if kinds[-1] == "ai":
        msg = (
            "the conversation ends with the assistant's message: there is nothing to "
            "answer; end it with a user message (or a tool result)"
        )
        raise ValueError(msg)


def turn(state: Mapping[str, Any]) -> int:
    """Which run of the conversation this is: the length of the conversation it answers.

    A thread (LangGraph Studio, a checkpointer) keeps ``calls`` across runs;
    the turn tells this run's calls apart.
    """
    return len(state["messages"])


def get_calls(result: BaseMessage | Mapping[str, Any]) -> list[ModelCall]:
    """The call records of one answer, layer by layer, in proposer order.

    Args:
        result: A ``ChatMoA`` answer (its ``response_metadata["layers"]``),
            or the graph's output, whose last run's calls are returned.

    Raises:
        ValueError: ``result`` carries no MoA call records.
    """
    if isinstance(result, BaseMessage):
        layers = result.response_metadata.get("layers")
        if layers is None:
            msg = "the message carries no MoA call records (response_metadata['layers'])"
            raise ValueError(msg)
        return [call for layer in layers for call in layer]
    if "calls" not in result:
        msg = "the state carries no MoA call records ('calls')"
        raise ValueError(msg)
    calls: list[ModelCall] = list(result["calls"])
    if not calls:
        return []
    last = max(call["turn"] for call in calls)
    return sorted(
        (call for call in calls if call["turn"] == last),
        key=lambda call: (call["layer"], call["index"]),
    )


def get_accounting(result: BaseMessage | Mapping[str, Any]) -> Accounting:
    """Per-layer and total tokens, latency, critical path, cost and TFLOPs of one answer.

    Args:
        result: A ``ChatMoA`` answer (its ``response_metadata["accounting"]``),
            or the graph's output, whose last run's calls are summed (its
            latency then spans the first call's start to the last one's end).

    Raises:
        ValueError: ``result`` carries no MoA accounting or call records.
    """
    if isinstance(result, BaseMessage):
        accounting = result.response_metadata.get("accounting")
        if accounting is None:
            msg = "the message carries no MoA accounting (response_metadata['accounting'])"
            raise ValueError(msg)
        return cast("Accounting", accounting)
    calls = get_calls(result)
    span = 0.0
    if calls:
        span = max(c["started_at"] + c["latency_s"] for c in calls) - min(
            c["started_at"] for c in calls
        )
    return account(calls, latency_s=span)
