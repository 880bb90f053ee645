"""LangChain answers as OpenAI's: chat completions and their chunks, Responses and their events.

The one way out, for both endpoints. An answer is ``ChatMoA``'s
``AIMessage`` (text, tool calls, the stack's usage); a stream is its
``AIMessageChunk`` s as the aggregator wrote them, each sent as it came:
never split or merged. Tool calls stream as OpenAI's do: a call's first
delta carries its index, id and name, the next ones fragments of its
arguments.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata

from langchain_moa.graph.state import was_cut


def new_id(prefix: str) -> str:
    """An object id as OpenAI's look: ``chatcmpl-...``, ``resp_...``, ``msg_...``."""
    return f"{prefix}{uuid.uuid4().hex}"


def finish_reason(answer: BaseMessage | None) -> str:
    """``finish_reason``: ``tool_calls``, ``length`` when the answer was cut, else ``stop``."""
    if getattr(answer, "tool_calls", None):
        return "tool_calls"
    return "length" if was_cut(answer) else "stop"


def _arguments(call: Mapping[str, Any]) -> str:
    return json.dumps(call.get("args") or {}, ensure_ascii=False)


@dataclass
class CallKey:
    """Which call a tool-call fragment belongs to: its index, else its id, else the last one's.

    Providers number a stream's calls by ``index``; some send none and an id
    on each call's first fragment only.
    """

    _last: Any = None

    def __call__(self, fragment: Mapping[str, Any]) -> Any:
        """The fragment's call."""
        key = fragment.get("index")
        if key is None:
            key = fragment.get("id") or self._last
        self._last = key
        return key


# Chat completions.


def usage(metadata: UsageMetadata | None) -> dict[str, int]:
    """The chat API's ``usage`` from an answer's ``usage_metadata`` (every call of the stack)."""
    if metadata is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    prompt = metadata.get("input_tokens", 0)
    completion = metadata.get("output_tokens", 0)
    total = metadata.get("total_tokens", prompt + completion)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def chat_message(answer: BaseMessage) -> dict[str, Any]:
    """The answer as the chat API's assistant message."""
    calls = getattr(answer, "tool_calls", None) or []
    # With tool calls and no text, OpenAI's content is null.
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if not calls:
        return {**message, "content": answer.text}
    message["tool_calls"] = [
        {
            "id": call.get("id") or new_id("call_"),
            "type": "function",
            "function": {"name": call["name"], "arguments": _arguments(call)},
        }
        for call in calls
    ]
    return message


def completion(*, id_: str, model: str, created: int, answer: BaseMessage) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice: the answer."""
    return {
        "id": id_,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": chat_message(answer),
                "logprobs": None,
                "finish_reason": finish_reason(answer),
            }
        ],
        "usage": usage(getattr(answer, "usage_metadata", None)),
    }


def chunk(
    *,
    id_: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    include_usage: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``delta=None`` is the usage chunk, with no choice.

    With ``include_usage``, every chunk has ``usage`` (null but the last's), as OpenAI's do.
    """
    body: dict[str, Any] = {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:
        body["usage"] = None
    return body


@dataclass
class ToolCallDeltas:
    """Turns a stream's ``tool_call_chunks`` into the chat API's ``delta.tool_calls``."""

    _started: dict[Any, int] = field(default_factory=dict)
    _key: CallKey = field(default_factory=CallKey)

    def __call__(self, part: AIMessageChunk) -> list[dict[str, Any]]:
        """The deltas of one chunk's tool-call fragments (none if it has no fragment)."""
        deltas = []
        for fragment in part.tool_call_chunks:
            key = self._key(fragment)
            if key not in self._started:
                # A call's first fragment: its index, id and name.
                self._started[key] = len(self._started)
                deltas.append(
                    {
                        "index": self._started[key],
                        "id": fragment.get("id") or new_id("call_"),
                        "type": "function",
                        "function": {
                            "name": fragment.get("name") or "",
                            "arguments": fragment.get("args") or "",
                        },
                    }
                )
            elif fragment.get("args"):
                deltas.append(
                    {"index": self._started[key], "function": {"arguments": fragment["args"]}}
                )
        return deltas


# The Responses API.


def responses_usage(metadata: UsageMetadata | None) -> dict[str, Any]:
    """The Responses API's ``usage`` (every call of the stack)."""
    counts = usage(metadata)
    return {
        "input_tokens": counts["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": counts["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": counts["total_tokens"],
    }


def output_message(item_id: str, text: str, *, status: str = "completed") -> dict[str, Any]:
    """An assistant ``message`` output item with one ``output_text`` part."""
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [output_text(text)] if status == "completed" else [],
    }


def output_text(text: str) -> dict[str, Any]:
    """An ``output_text`` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call(
    item_id: str, call_id: str, name: str, arguments: str, *, status: str = "completed"
) -> dict[str, Any]:
    """A ``function_call`` output item."""
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def output_items(answer: BaseMessage) -> list[dict[str, Any]]:
    """The answer as output items: its text (if any), then one item per tool call."""
    items = []
    if answer.text:
        items.append(output_message(new_id("msg_"), answer.text))
    for call in getattr(answer, "tool_calls", None) or []:
        call_id = call.get("id") or new_id("call_")
        items.append(function_call(new_id("fc_"), call_id, call["name"], _arguments(call)))
    return items


@dataclass(frozen=True)
class ResponseHead:
    """What every snapshot of one response repeats: its id, model and the request's settings."""

    id: str
    model: str
    created_at: int
    settings: Mapping[str, Any]
    """``instructions``, ``tools``, ``tool_choice``, ``temperature``, ``max_output_tokens``,
    ``text``, as the request had them."""

    def response(
        self,
        *,
        status: str,
        output: list[dict[str, Any]] | None = None,
        usage_metadata: UsageMetadata | None = None,
        error: dict[str, Any] | None = None,
        incomplete: bool = False,
    ) -> dict[str, Any]:
        """A ``response`` object at ``status`` (``in_progress``, ``completed``, ``failed``...)."""
        done = status in {"completed", "incomplete"}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": self.settings.get("instructions"),
            "max_output_tokens": self.settings.get("max_output_tokens"),
            "metadata": {},
            "model": self.model,
            "output": output or [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "store": False,
            "temperature": self.settings.get("temperature"),
            "text": self.settings.get("text") or {"format": {"type": "text"}},
            "tool_choice": self.settings.get("tool_choice") or "auto",
            "tools": self.settings.get("tools") or [],
            "top_p": None,
            "truncation": "disabled",
            "usage": responses_usage(usage_metadata) if done else None,
            "user": None,
        }

    def answered(self, answer: BaseMessage) -> dict[str, Any]:
        """The whole response to ``answer``; ``incomplete`` where it was cut at its limit."""
        cut = was_cut(answer) and not getattr(answer, "tool_calls", None)
        return self.response(
            status="incomplete" if cut else "completed",
            output=output_items(answer),
            usage_metadata=getattr(answer, "usage_metadata", None),
            incomplete=cut,
        )


def response_head(model: str, settings: Mapping[str, Any]) -> ResponseHead:
    """A new response's head."""
    return ResponseHead(new_id("resp_"), model, int(time.time()), settings)


@dataclass
class ResponseEvents:
    """A streamed response's events, in the official order, each numbered.

    ``created``, then for each output item as it starts ``output_item.added``
    (a message's ``content_part.added`` too), its deltas
    (``output_text.delta``, ``function_call_arguments.delta``), and at the
    end each item's ``done`` events and ``response.completed``.
    """

    head: ResponseHead
    _sequence: int = 0
    _items: list[dict[str, Any]] = field(default_factory=list)
    _message: dict[str, Any] | None = None
    _text: str = ""
    _calls: dict[Any, dict[str, Any]] = field(default_factory=dict)
    _key: CallKey = field(default_factory=CallKey)

    def event(self, kind: str, **data: Any) -> dict[str, Any]:
        """One event of type ``kind``, numbered."""
        self._sequence += 1
        return {"type": kind, "sequence_number": self._sequence - 1, **data}

    def created(self) -> list[dict[str, Any]]:
        """The first events: the response, in progress."""
        response = self.head.response(status="in_progress")
        return [
            self.event("response.created", response=response),
            self.event("response.in_progress", response=response),
        ]

    def _add(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        self._items.append(item)
        return [self.event("response.output_item.added", output_index=len(self._items) - 1,
                           item=dict(item))]  # fmt: skip

    def text(self, delta: str) -> list[dict[str, Any]]:
        """The events of a piece of the answer's text."""
        events = []
        if self._message is None:
            self._message = output_message(new_id("msg_"), "", status="in_progress")
            events += self._add(self._message)
            events.append(self._part_event("response.content_part.added", output_text("")))
        self._text += delta
        events.append(
            self.event(
                "response.output_text.delta",
                item_id=self._message["id"],
                output_index=self._items.index(self._message),
                content_index=0,
                delta=delta,
                logprobs=[],
            )
        )
        return events

    def _part_event(self, kind: str, part: dict[str, Any]) -> dict[str, Any]:
        message = self._message or {}
        return self.event(
            kind,
            item_id=message["id"],
            output_index=self._items.index(message),
            content_index=0,
            part=part,
        )

    def tool_call(self, fragment: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The events of one tool-call fragment (a ``tool_call_chunks`` entry)."""
        key = self._key(fragment)
        events = []
        call = self._calls.get(key)
        if call is None:
            call = function_call(
                new_id("fc_"),
                fragment.get("id") or new_id("call_"),
                fragment.get("name") or "",
                "",
                status="in_progress",
            )
            self._calls[key] = call
            events += self._add(call)
        if arguments := fragment.get("args"):
            call["arguments"] += arguments
            events.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=call["id"],
                    output_index=self._items.index(call),
                    delta=arguments,
                )
            )
        return events

    def chunk(self, part: AIMessageChunk) -> list[dict[str, Any]]:
        """The events of one chunk of the answer."""
        events = self.text(part.text) if part.text else []
        for fragment in part.tool_call_chunks:
            events += self.tool_call(fragment)
        return events

    def completed(self, answer: BaseMessage | None) -> list[dict[str, Any]]:
        """The closing events: each item done, then ``response.completed`` with the whole."""
        events = []
        output = []
        for index, item in enumerate(self._items):
            if item is self._message:
                text = self._text
                item.update(status="completed", content=[output_text(text)])
                events.append(
                    self.event(
                        "response.output_text.done",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        text=text,
                        logprobs=[],
                    )
                )
                events.append(self._part_event("response.content_part.done", output_text(text)))
            else:
                item["status"] = "completed"
                events.append(
                    self.event(
                        "response.function_call_arguments.done",
                        item_id=item["id"],
                        output_index=index,
                        name=item["name"],
                        arguments=item["arguments"],
                    )
                )
            events.append(self.event("response.output_item.done", output_index=index, item=item))
            output.append(item)
        cut = answer is not None and was_cut(answer) and not self._calls
        response = self.head.response(
            status="incomplete" if cut else "completed",
            output=output,
            usage_metadata=getattr(answer, "usage_metadata", None),
            incomplete=cut,
        )
        kind = "response.incomplete" if cut else "response.completed"
        return [*events, self.event(kind, response=response)]

    def failed(self, error: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The closing events of a response that failed: ``error``, then ``response.failed``.

        Args:
            error: OpenAI's error object's inside: ``message``, ``type``, ``code``, ``param``.
        """
        code = error.get("code") or error.get("type") or "server_error"
        response = self.head.response(
            status="failed", error={"code": code, "message": error.get("message", "")}
        )
        return [
            self.event("error", code=code, message=error.get("message", ""),
                       param=error.get("param")),
            self.event("response.failed", response=response),
        ]  # fmt: skip
