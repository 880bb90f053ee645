"""A scripted chat model for plumbing tests: fixed replies, delays, failures, a log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field


def _usage(messages: list[BaseMessage], reply: str) -> UsageMetadata:
    prompt_words = sum(len(m.text.split()) for m in messages)
    reply_words = len(reply.split())
    return UsageMetadata(
        input_tokens=prompt_words,
        output_tokens=reply_words,
        total_tokens=prompt_words + reply_words,
    )


class ScriptedChatModel(BaseChatModel):
    """Replies with ``reply`` after ``delay_s``; raises ``error`` if set.

    Every call's messages, kwargs and start/end times go to ``log`` (and, for an
    async call cancelled while it waits, the time it was cancelled). Usage
    counts words. Streaming yields one word at a time, ``token_delay_s`` apart.
    """

    model_name: str = "scripted"
    reply: str | Callable[[list[BaseMessage]], str | AIMessage] = "ok"
    delay_s: float = 0.0
    token_delay_s: float = 0.0
    error: str | None = None
    log: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        # Tools arrive as call kwargs, where the log sees them.
        return self.bind(tools=list(tools), tool_choice=tool_choice, **kwargs)

    def _reply(self, messages: list[BaseMessage], **kwargs: Any) -> str | AIMessage:
        self.log.append({"messages": messages, "kwargs": kwargs, "start": time.perf_counter()})
        if self.error:
            raise RuntimeError(self.error)
        return self.reply(messages) if callable(self.reply) else self.reply

    def _done(self, messages: list[BaseMessage], reply: str | AIMessage) -> ChatResult:
        self.log[-1]["end"] = time.perf_counter()
        text = reply if isinstance(reply, str) else reply.text
        message = AIMessage(
            content=text,
            tool_calls=[] if isinstance(reply, str) else reply.tool_calls,
            usage_metadata=_usage(messages, text),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        reply = self._reply(messages, stop=stop, **kwargs)
        time.sleep(self.delay_s)
        return self._done(messages, reply)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        reply = self._reply(messages, stop=stop, **kwargs)
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.log[-1]["cancelled"] = time.perf_counter()
            raise
        return self._done(messages, reply)

    def _chunks(self, reply: str | AIMessage) -> list[AIMessageChunk]:
        text = reply if isinstance(reply, str) else reply.text
        words = text.split(" ") if text else []
        chunks = [AIMessageChunk(content=w if i == 0 else f" {w}") for i, w in enumerate(words)]
        if not isinstance(reply, str):
            chunks += [
                AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"],
                         "index": index}
                    ],
                )
                for index, call in enumerate(reply.tool_calls)
            ]  # fmt: skip
        return chunks

    def _stream(
        self, messages, stop=None, run_manager=None, **kwargs
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._reply(messages, stop=stop, **kwargs)
        for chunk in self._chunks(reply):
            time.sleep(self.token_delay_s)
            self.log[-1].setdefault("chunk_times", []).append(time.perf_counter())
            yield ChatGenerationChunk(message=chunk)
        self.log[-1]["end"] = time.perf_counter()
        text = reply if isinstance(reply, str) else reply.text
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", usage_metadata=_usage(messages, text))
        )

    async def _astream(
        self, messages, stop=None, run_manager=None, **kwargs
    ) -> AsyncIterator[ChatGenerationChunk]:
        reply = self._reply(messages, stop=stop, **kwargs)
        for chunk in self._chunks(reply):
            await asyncio.sleep(self.token_delay_s)
            self.log[-1].setdefault("chunk_times", []).append(time.perf_counter())
            yield ChatGenerationChunk(message=chunk)
        self.log[-1]["end"] = time.perf_counter()
        text = reply if isinstance(reply, str) else reply.text
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", usage_metadata=_usage(messages, text))
        )
