"""OpenAI's chat completions format: the request checked, the answer and errors shaped.

Plain data and pydantic, no web framework: ``langchain_moa.serve.app`` reads
requests with ``ChatCompletionRequest`` and writes what these functions build.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from langchain_moa.graph.state import was_cut

Role = Literal["system", "developer", "user", "assistant", "tool"]
"""Message roles taken; ``developer`` is OpenAI's newer name for ``system``."""


def _unsupported(message: str) -> PydanticCustomError:
    return PydanticCustomError("unsupported", message)


class FunctionCall(BaseModel):
    """A tool call's function: its name and JSON arguments."""

    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: str = "{}"

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, value: str) -> str:
        # Parsed here, so that a bad one is a 400 naming it, not a failure later.
        try:
            parsed = json.loads(value or "{}")
        except json.JSONDecodeError as error:
            msg = f"not valid JSON: {error}"
            raise _unsupported(msg) from None
        if not isinstance(parsed, dict):
            msg = "must be a JSON object"
            raise _unsupported(msg)
        return value


class ToolCall(BaseModel):
    """A tool call an earlier assistant message made."""

    model_config = ConfigDict(extra="ignore")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    """One message of the conversation; content is a string or text parts."""

    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str | list[dict[str, str]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        # Checked by hand: a union's error would name each of its members.
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            msg = "must be a string or a list of text parts"
            raise _unsupported(msg)
        parts = []
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                msg = f"part {index}: only text parts are supported ({{'type': 'text', ...}})"
                raise _unsupported(msg)
            parts.append({"type": "text", "text": part["text"]})
        return parts

    @model_validator(mode="after")
    def _fits_role(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            msg = f"tool_calls: only assistant messages have them, not {self.role}"
            raise _unsupported(msg)
        if self.role == "tool" and not self.tool_call_id:
            msg = "tool_call_id: a tool message needs the id of the call it answers"
            raise _unsupported(msg)
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            msg = f"content: a {self.role} message needs content"
            raise _unsupported(msg)
        return self

    def to_langchain(self) -> BaseMessage:
        """The LangChain message this is."""
        content: Any = "" if self.content is None else self.content
        if self.role in {"system", "developer"}:
            return SystemMessage(content=content)
        if self.role == "user":
            return HumanMessage(content=content, name=self.name)
        if self.role == "tool":
            return ToolMessage(content=content, tool_call_id=self.tool_call_id or "")
        calls = [
            {
                "name": call.function.name,
                "args": json.loads(call.function.arguments or "{}"),
                "id": call.id,
                "type": "tool_call",
            }
            for call in self.tool_calls or []
        ]
        return AIMessage(content=content, tool_calls=calls, name=self.name)


class StreamOptions(BaseModel):
    """``stream_options``: only ``include_usage`` means anything here."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


_NEUTRAL: Mapping[str, tuple[Any, str]] = {
    "n": (1, "only one choice (n=1) is served"),
    "top_p": (1, "not supported: set the stack's models' own sampling instead"),
    "presence_penalty": (0, "not supported"),
    "frequency_penalty": (0, "not supported"),
    "logprobs": (False, "not supported: a MoA answer has no single model's log-probabilities"),
    "top_logprobs": (0, "not supported"),
    "logit_bias": ({}, "not supported"),
    "seed": (None, "not supported: each proposer samples with its own seed"),
    "tools": ([], "not supported: tool calling is not served"),
    "functions": ([], "not supported: tool calling is not served"),
    "tool_choice": ("none", "not supported: tool calling is not served"),
    "function_call": ("none", "not supported: tool calling is not served"),
}
"""Options taken only at their neutral value (or absent), and why others are refused."""


class ChatCompletionRequest(BaseModel):
    """A ``POST /v1/chat/completions`` body.

    Honoured: ``model`` (which stack), ``messages``, ``stream``,
    ``stream_options.include_usage``, and, for the final answer (the
    aggregator's call) only, ``max_completion_tokens`` (or ``max_tokens``),
    ``temperature`` and ``stop``: the proposers keep their stack's settings,
    so that every request gets the same references. Refused with a 400
    naming the field: ``n`` other than 1, tools and functions, log-probs,
    ``seed``, ``top_p``, penalties, ``logit_bias``, a ``response_format``
    other than text. Fields this API does not know (``user``, ``metadata``,
    newer ones) are ignored, as clients send them freely.
    """

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stop: list[str] | None = None
    response_format: dict[str, Any] | None = None
    n: int | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, Any] | None = None
    seed: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    function_call: Any = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        # OpenAI takes one string or a list of them.
        return [value] if isinstance(value, str) else value

    @field_validator("response_format")
    @classmethod
    def _text_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type", "text") != "text":
            msg = f"only {{'type': 'text'}} is supported, not {value.get('type')!r}"
            raise _unsupported(msg)
        return value

    @field_validator(*_NEUTRAL)
    @classmethod
    def _neutral(cls, value: Any, info: Any) -> Any:
        neutral, why = _NEUTRAL[info.field_name]
        if value is not None and value != neutral:
            raise _unsupported(why)
        return value

    @property
    def answer_max_tokens(self) -> int | None:
        """The final answer's token limit: ``max_completion_tokens``, else ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def langchain_messages(self) -> list[BaseMessage]:
        """The conversation as LangChain messages."""
        return [message.to_langchain() for message in self.messages]


def field_path(loc: tuple[int | str, ...]) -> str | None:
    """A pydantic error location as OpenAI's ``param``: ``messages[0].content``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or None


def describe_validation(error: ValidationError) -> tuple[str, str | None]:
    """A validation error's message, each problem naming its field, and the first field."""
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    lines = [f"{field_path(problem['loc']) or 'body'}: {problem['msg']}" for problem in problems]
    return "; ".join(lines), field_path(problems[0]["loc"]) if problems else None


def error_body(
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def usage(metadata: UsageMetadata | None) -> dict[str, int]:
    """OpenAI's ``usage`` from an answer's ``usage_metadata`` (every call of the stack)."""
    if metadata is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    prompt = metadata.get("input_tokens", 0)
    completion = metadata.get("output_tokens", 0)
    total = metadata.get("total_tokens", prompt + completion)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def finish_reason(answer: BaseMessage | None) -> str:
    """OpenAI's ``finish_reason`` for an answer: ``"length"`` when it was cut, else ``"stop"``."""
    return "length" if was_cut(answer) else "stop"


def completion(
    *,
    id_: str,
    model: str,
    created: int,
    text: str,
    metadata: UsageMetadata | None,
    finish: str = "stop",
) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice."""
    return {
        "id": id_,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage(metadata),
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


def model_card(model_id: str, created: int) -> dict[str, Any]:
    """A ``model`` object of ``GET /v1/models``."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": "langchain-moa"}
