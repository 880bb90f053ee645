"""``POST /v1/responses``: a stack's answer as OpenAI's Responses API gives one, plain or streamed.

Stateless (see ``langchain_moa.serve.responses_format``): each request
carries its whole conversation, and no response is kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage

from langchain_moa.chat_models import ChatMoA
from langchain_moa.serve.asking import Ask, answered, merged
from langchain_moa.serve.from_langchain import ResponseEvents, ResponseHead, response_head

# Starlette through serve.http, which names the extra when it is missing.
from langchain_moa.serve.http import JSONResponse, Response, chunks, failure, opened, sse, streamed
from langchain_moa.serve.responses_format import ResponsesRequest
from langchain_moa.serve.to_langchain import responses_messages
from langchain_moa.serve.turns import TurnReferences


def responses_ask(asked: ResponsesRequest) -> Ask:
    """What a Responses request asks of its stack."""
    return Ask(
        model=asked.model,
        messages=responses_messages(asked.input, asked.instructions),
        param=asked.conversation_field,
        tools=asked.function_tools,
        tool_choice=asked.chat_tool_choice,
        answer_format=asked.answer_format,
        temperature=asked.temperature,
        max_tokens=asked.max_output_tokens,
    )


def _head(asked: ResponsesRequest) -> ResponseHead:
    text = {"format": asked.answer_format.responses()} if asked.answer_format else None
    settings: dict[str, Any] = {
        "instructions": asked.instructions,
        "tools": [
            {**tool.model_dump(), "strict": tool.strict is not False} for tool in asked.tools or []
        ],
        "tool_choice": asked.tool_choice,
        "temperature": asked.temperature,
        "max_output_tokens": asked.max_output_tokens,
        "text": text,
    }
    return response_head(asked.model, settings)


async def response(
    moa: ChatMoA,
    asked: ResponsesRequest,
    turns: TurnReferences | None,
    give_back: Callable[[], None],
) -> tuple[Response, bool]:
    """The answer to ``asked``, and whether the response gives the slot back itself (a stream).

    Raises:
        Exception: what the stack raised before any answer was sent, when not
            streamed (``failure`` says how it is answered).
    """
    ask = responses_ask(asked)
    runnable, messages, options = ask.prepare(moa, turns)
    head = _head(asked)
    if not asked.stream:
        reply = answered(ask, await runnable.ainvoke(messages, **options), turns)
        return JSONResponse(head.answered(reply)), False
    stream = aiter(runnable.astream(messages, **options))
    # As for a chat completion, the proposers' failure is a 503, not a stream that failed.
    first = await opened(stream)
    events = _events(ask, turns, stream, first, ResponseEvents(head))
    return streamed(events, stream, give_back), True


async def _events(
    ask: Ask,
    turns: TurnReferences | None,
    stream: AsyncIterator[BaseMessage],
    first: BaseMessage | None,
    events: ResponseEvents,
) -> AsyncIterator[str]:
    for event in events.created():
        yield sse(event, event=event["type"])
    # Merged once at the end: adding each chunk to the last costs more than sending it.
    parts: list[AIMessageChunk] = []
    answer: AIMessageChunk | None = None
    try:
        async for part in chunks(stream, first):
            parts.append(part)
            for event in events.chunk(part):
                yield sse(event, event=event["type"])
        answer = merged(parts)
        if answer is not None:
            answered(ask, answer, turns)
    except Exception as error:  # noqa: BLE001 - told to the client, then the stream ends
        for event in events.failed(failure(error).body["error"]):
            yield sse(event, event=event["type"])
        return
    for event in events.completed(answer):
        yield sse(event, event=event["type"])
