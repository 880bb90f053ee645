"""A scripted chat model for plumbing tests: fixed replies, delays, failures, a log."""

from __future__ import annotations

import asyncio
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

    Every call's messages, kwargs and start/end times go to ``log``. Usage
    counts words. Streaming yields one word at a time, ``token_delay_s`` apart.
    """

    model_name: str = "scripted"
    reply: str | Callable[[list[BaseMessage]], str] = "ok"
    delay_s: float = 0.0
    token_delay_s: float = 0.0
    error: str | None = None
    log: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _reply(self, messages: list[BaseMessage], **kwargs: Any) -> str:
        self.log.append({"messages": messages, "kwargs": kwargs, "start": time.perf_counter()})
        if self.error:
            raise RuntimeError(self.error)
        return self.reply(messages) if callable(self.reply) else self.reply

    def _done(self, messages: list[BaseMessage], text: str) -> ChatResult:
        self.log[-1]["end"] = time.perf_counter()
        message = AIMessage(content=text, usage_metadata=_usage(messages, text))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        text = self._reply(messages, stop=stop, **kwargs)
        time.sleep(self.delay_s)
        return self._done(messages, text)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        text = self._reply(messages, stop=stop, **kwargs)
        await asyncio.sleep(self.delay_s)
        return self._done(messages, text)

    def _chunks(self, text: str) -> list[str]:
        words = text.split(" ")
        return [w if i == 0 else f" {w}" for i, w in enumerate(words)]

    def _stream(
        self, messages, stop=None, run_manager=None, **kwargs
    ) -> Iterator[ChatGenerationChunk]:
        text = self._reply(messages, stop=stop, **kwargs)
        for piece in self._chunks(text):
            time.sleep(self.token_delay_s)
            self.log[-1].setdefault("chunk_times", []).append(time.perf_counter())
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        self.log[-1]["end"] = time.perf_counter()
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", usage_metadata=_usage(messages, text))
        )

    async def _astream(
        self, messages, stop=None, run_manager=None, **kwargs
    ) -> AsyncIterator[ChatGenerationChunk]:
        text = self._reply(messages, stop=stop, **kwargs)
        for piece in self._chunks(text):
            await asyncio.sleep(self.token_delay_s)
            self.log[-1].setdefault("chunk_times", []).append(time.perf_counter())
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        self.log[-1]["end"] = time.perf_counter()
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", usage_metadata=_usage(messages, text))
        )
