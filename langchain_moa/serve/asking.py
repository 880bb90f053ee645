"""One request as the stack is asked it, whichever API it came through.

Both endpoints and the live page read their request into an ``Ask``: the
conversation (LangChain messages), the tools and ``tool_choice`` as
``ChatMoA.bind_tools`` takes them, the final answer's format and its call
options. ``Ask.prepare`` turns it into what is run: the stack with its tools
bound, the conversation (earlier answers' references given back for
``fanout: per_turn``, see ``langchain_moa.serve.turns``) and the options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import add_ai_message_chunks
from langchain_core.runnables import Runnable

from langchain_moa.chat_models import ChatMoA
from langchain_moa.graph.state import check_conversation
from langchain_moa.openai_compatible import max_tokens_option
from langchain_moa.serve import structured
from langchain_moa.serve.from_langchain import new_id
from langchain_moa.serve.structured import AnswerFormat
from langchain_moa.serve.turns import TurnReferences


class BadConversationError(ValueError):
    """The conversation has nothing to answer (a 400 naming ``param``)."""

    def __init__(self, message: str, param: str) -> None:
        """The problem and the request field it is in."""
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Ask:
    """What a request asks of a stack."""

    model: str
    """The stack's id."""
    messages: list[BaseMessage]
    """The conversation, ending where the answer starts."""
    param: str
    """The request's field that holds the conversation (errors name it)."""
    tools: list[dict[str, Any]] = field(default_factory=list)
    """Functions the answer may call, in the chat completions format."""
    tool_choice: Any = None
    """``auto``, ``none``, ``required`` or a named function (chat completions format)."""
    answer_format: AnswerFormat | None = None
    """JSON the answer must be, if any."""
    temperature: float | None = None
    stop: list[str] | None = None
    max_tokens: int | None = None

    def prepare(
        self, moa: ChatMoA, turns: TurnReferences | None = None
    ) -> tuple[Runnable[LanguageModelInput, BaseMessage], list[BaseMessage], dict[str, Any]]:
        """The runnable, its input and its call options.

        ``turns``, given for a ``per_turn`` stack, gives earlier answers their references back.

        Raises:
            BadConversationError: there is nothing to answer.
        """
        try:
            check_conversation(self.messages)
        except ValueError as error:
            message = f"{self.param}: {error}"
            raise BadConversationError(message, self.param) from None
        messages = self.messages if turns is None else turns.recall(self.model, self.messages)
        options = self.options(moa)
        if self.answer_format is not None:
            messages, options = structured.apply(
                self.answer_format, moa.stack.aggregators, messages, options
            )
        runnable: Runnable[LanguageModelInput, BaseMessage] = moa
        if self.tools:
            runnable = moa.bind_tools(self.tools, tool_choice=self.tool_choice)
        return runnable, messages, options

    def options(self, moa: ChatMoA) -> dict[str, Any]:
        """The request's settings as options of the final answer's call (the aggregator's)."""
        options: dict[str, Any] = {}
        if self.stop:
            options["stop"] = self.stop
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.max_tokens is not None:
            options.update(max_tokens_option(moa.stack.aggregators, self.max_tokens))
        return options

    def check(self, answer: BaseMessage) -> None:
        """Refuse an answer that is not the JSON asked for (a tool call is not checked).

        Raises:
            StructuredAnswerError: the answer's text is not the JSON asked for.
        """
        if self.answer_format is not None and not getattr(answer, "tool_calls", None):
            self.answer_format.check(answer.text)


def merged(parts: Sequence[AIMessageChunk]) -> AIMessageChunk | None:
    """A stream's chunks as one answer (None for none)."""
    return add_ai_message_chunks(parts[0], *parts[1:]) if parts else None


def with_call_ids(answer: BaseMessage) -> BaseMessage:
    """``answer`` with an id on every tool call: a client sends results back by id."""
    calls = getattr(answer, "tool_calls", None)
    if not calls or all(call.get("id") for call in calls):
        return answer
    named = [{**call, "id": call.get("id") or new_id("call_")} for call in calls]
    return answer.model_copy(update={"tool_calls": named})


def answered(ask: Ask, answer: BaseMessage, turns: TurnReferences | None) -> BaseMessage:
    """The answer as it is sent: checked, its calls named, its references kept for the turn.

    Raises:
        StructuredAnswerError: the answer is not the JSON asked for.
    """
    ask.check(answer)
    answer = with_call_ids(answer)
    if turns is not None and isinstance(answer, AIMessage):
        turns.remember(ask.model, ask.messages, answer)
    return answer
