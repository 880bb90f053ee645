"""OpenAI's chat messages and Responses input items, as LangChain messages.

The one way in, for ``/v1/chat/completions``, ``/v1/responses`` and the live
page: the requests are checked already (``openai_format``,
``responses_format``), so nothing here refuses but a conversation with
nothing to answer. Image parts arrive as LangChain's content blocks
(``{"type": "image", "mime_type", "base64"}``): each model of the stack
then reads them or a placeholder, by its profile (``graph.budget``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from langchain_moa.serve.openai_format import Message
from langchain_moa.serve.responses_format import FunctionCallItem, FunctionCallOutput, InputMessage


def tool_call(name: str, arguments: str, call_id: str) -> dict[str, Any]:
    """LangChain's tool call from OpenAI's function call (arguments checked already)."""
    return {"name": name, "args": json.loads(arguments or "{}"), "id": call_id, "type": "tool_call"}


def chat_message(message: Message) -> BaseMessage:
    """The LangChain message a chat completions message is."""
    content: Any = "" if message.content is None else message.content
    if message.role in {"system", "developer"}:
        return SystemMessage(content=content)
    if message.role == "user":
        return HumanMessage(content=content, name=message.name)
    if message.role == "tool":
        return ToolMessage(content=content, tool_call_id=message.tool_call_id or "")
    calls = [
        tool_call(call.function.name, call.function.arguments, call.id)
        for call in message.tool_calls or []
    ]
    return AIMessage(content=content, tool_calls=calls, name=message.name)


def chat_messages(messages: Iterable[Message]) -> list[BaseMessage]:
    """A chat completion request's conversation."""
    return [chat_message(message) for message in messages]


ResponsesItem = InputMessage | FunctionCallItem | FunctionCallOutput


def responses_messages(
    items: Sequence[ResponsesItem], instructions: str | None
) -> list[BaseMessage]:
    """A Responses request's ``instructions`` and ``input`` as one conversation.

    An assistant message and the function calls right after it are one
    ``AIMessage`` (the Responses API lists each call as an item of its own).
    """
    messages: list[BaseMessage] = []
    if instructions:
        messages.append(SystemMessage(content=instructions))
    for item in items:
        content: Any = item.content if isinstance(item, InputMessage) else None
        if isinstance(item, FunctionCallItem):
            call = tool_call(item.name, item.arguments, item.call_id)
            last = messages[-1] if messages else None
            if isinstance(last, AIMessage):
                messages[-1] = last.model_copy(update={"tool_calls": [*last.tool_calls, call]})
            else:
                messages.append(AIMessage(content="", tool_calls=[call]))
        elif isinstance(item, FunctionCallOutput):
            messages.append(ToolMessage(content=item.output, tool_call_id=item.call_id))
        elif item.role in {"system", "developer"}:
            messages.append(SystemMessage(content=content))
        elif item.role == "user":
            messages.append(HumanMessage(content=content))
        else:
            messages.append(AIMessage(content=content))
    return messages
