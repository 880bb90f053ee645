"""``POST /v1/chat/completions``: a stack's answer as a chat completion, plain or streamed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage

from langchain_moa.chat_models import ChatMoA
from langchain_moa.serve.asking import Ask, answered, merged
from langchain_moa.serve.from_langchain import (
    ToolCallDeltas,
    chunk,
    completion,
    finish_reason,
    new_id,
    usage,
)

# Starlette through serve.http, which names the extra when it is missing.
from langchain_moa.serve.http import JSONResponse, Response, chunks, failure, opened, sse, streamed
from langchain_moa.serve.openai_format import ChatCompletionRequest
from langchain_moa.serve.to_langchain import chat_messages
from langchain_moa.serve.turns import TurnReferences


def chat_ask(asked: ChatCompletionRequest) -> Ask:
    """What a chat completion request asks of its stack."""
    return Ask(
        model=asked.model,
        messages=chat_messages(asked.messages),
        param=asked.conversation_field,
        tools=asked.function_tools,
        tool_choice=asked.tool_choice,
        answer_format=asked.response_format,
        temperature=asked.temperature,
        stop=asked.stop,
        max_tokens=asked.answer_max_tokens,
    )


async def chat_completion(
    moa: ChatMoA,
    asked: ChatCompletionRequest,
    turns: TurnReferences | None,
    give_back: Callable[[], None],
) -> tuple[Response, bool]:
    """The answer to ``asked``, and whether the response gives the slot back itself (a stream).

    Raises:
        Exception: what the stack raised before any answer was sent (``failure``
            says how it is answered).
    """
    ask = chat_ask(asked)
    runnable, messages, options = ask.prepare(moa, turns)
    id_, created = new_id("chatcmpl-"), int(time.time())
    if not asked.stream:
        reply = answered(ask, await runnable.ainvoke(messages, **options), turns)
        body = completion(id_=id_, model=asked.model, created=created, answer=reply)
        return JSONResponse(body), False
    stream = aiter(runnable.astream(messages, **options))
    first = await opened(stream)
    events = _events(ask, asked, turns, stream, first, id_=id_, created=created)
    return streamed(events, stream, give_back), True


async def _events(
    ask: Ask,
    asked: ChatCompletionRequest,
    turns: TurnReferences | None,
    stream: AsyncIterator[BaseMessage],
    first: BaseMessage | None,
    *,
    id_: str,
    created: int,
) -> AsyncIterator[str]:
    include_usage = asked.include_usage

    def event(delta: dict[str, Any] | None, finish: str | None = None) -> str:
        body = chunk(
            id_=id_,
            model=asked.model,
            created=created,
            delta=delta,
            finish_reason=finish,
            include_usage=include_usage,
        )
        return sse(body)

    tool_deltas = ToolCallDeltas()
    # Merged once at the end: adding each chunk to the last costs more than sending it.
    parts: list[AIMessageChunk] = []
    answer: AIMessageChunk | None = None
    yield event({"role": "assistant", "content": ""})
    try:
        async for part in chunks(stream, first):
            parts.append(part)
            if text := part.text:
                # Each chunk as the stack streamed it: never split or merged.
                yield event({"content": text})
            if calls := tool_deltas(part):
                yield event({"tool_calls": calls})
        answer = merged(parts)
        if answer is not None:
            answered(ask, answer, turns)
    except Exception as error:  # noqa: BLE001 - told to the client, then the stream ends
        yield sse(failure(error).body)
        return
    yield event({}, finish_reason(answer))
    if include_usage:
        last = chunk(id_=id_, model=asked.model, created=created, delta=None)
        yield sse({**last, "usage": usage(answer.usage_metadata if answer else None)})
    yield sse("[DONE]")
