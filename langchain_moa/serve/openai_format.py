"""OpenAI's chat completions request, checked; the parts the Responses API shares; errors.

Plain data and pydantic, no web framework: ``langchain_moa.serve.app`` reads
requests with ``ChatCompletionRequest`` (and ``ResponsesRequest``, in
``langchain_moa.serve.responses_format``, with the tools, content parts and
answer formats checked here), ``langchain_moa.serve.to_langchain`` turns
them into LangChain messages and ``langchain_moa.serve.from_langchain``
writes the answers.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from langchain_moa.serve.structured import AnswerFormat

Role = Literal["system", "developer", "user", "assistant", "tool"]
"""Message roles taken; ``developer`` is OpenAI's newer name for ``system``."""

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""The image types OpenAI's vision models take."""

_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)
_SHOWN = 40
"""How much of a refused URL an error repeats."""
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def unsupported(message: str) -> PydanticCustomError:
    """A validation error whose message is ``message`` as written (no pydantic prefix)."""
    return PydanticCustomError("unsupported", message)


def image_data(url: Any) -> tuple[str, str]:
    """An image's MIME type and base64 data, from a data URL.

    Only data URLs are taken: the server fetches nothing, so a request cannot
    make it reach other hosts (or this machine's own services) for a client.

    Raises:
        PydanticCustomError: not a data URL of a PNG, JPEG, GIF or WebP image in base64.
    """
    if not isinstance(url, str):
        msg = "image_url.url must be a string"
        raise unsupported(msg)
    match = _DATA_URL.fullmatch(url)
    if match is None:
        shown = url if len(url) <= _SHOWN else f"{url[:_SHOWN]}..."
        msg = (
            f"only data URLs are taken ('data:image/png;base64,...'), not {shown!r}: "
            "this server fetches nothing"
        )
        raise unsupported(msg)
    kind, data = match["type"].lower(), match["data"]
    if kind not in IMAGE_TYPES:
        msg = f"{kind} is not an image type served ({', '.join(sorted(IMAGE_TYPES))})"
        raise unsupported(msg)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        msg = "the data URL's base64 does not decode"
        raise unsupported(msg) from None
    return kind, data


def text_and_image_parts(value: Any, *, images: bool) -> Any:
    """Content as a string or OpenAI chat parts: text, and images where allowed.

    Image parts come out as ``{"type": "image", "mime_type", "base64"}``
    (LangChain's content block), their data URL checked.
    """
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list):
        msg = "must be a string or a list of content parts"
        raise unsupported(msg)
    allowed = "text and image_url" if images else "text"
    parts: list[dict[str, str]] = []
    for index, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image_url" and images:
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            try:
                mime_type, data = image_data(url)
            except PydanticCustomError as error:
                msg = f"part {index}: {error.message()}"
                raise unsupported(msg) from None
            parts.append({"type": "image", "mime_type": mime_type, "base64": data})
        else:
            msg = f"part {index}: only {allowed} parts are supported here, not {kind!r}"
            raise unsupported(msg)
    return parts


def json_arguments(value: str) -> str:
    """A tool call's arguments, checked to be a JSON object (a 400 naming them otherwise)."""
    try:
        parsed = json.loads(value or "{}")
    except json.JSONDecodeError as error:
        msg = f"not valid JSON: {error}"
        raise unsupported(msg) from None
    if not isinstance(parsed, dict):
        msg = "must be a JSON object"
        raise unsupported(msg)
    return value


class FunctionCall(BaseModel):
    """A tool call's function: its name and JSON arguments."""

    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: str = "{}"

    _json_object = field_validator("arguments")(json_arguments)


class ToolCall(BaseModel):
    """A tool call an earlier assistant message made."""

    model_config = ConfigDict(extra="ignore")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


def function_name(value: str) -> str:
    """A function's name, as OpenAI takes it (a 400 naming the rule otherwise)."""
    if not _TOOL_NAME.fullmatch(value):
        msg = f"{value!r}: a function's name is 1 to 64 letters, digits, '_' or '-'"
        raise unsupported(msg)
    return value


class FunctionTool(BaseModel):
    """A function the answer may call (both APIs define one alike)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return function_name(value)

    def openai_tool(self) -> dict[str, Any]:
        """The tool in the chat completions format ``ChatMoA.bind_tools`` takes."""
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = self.parameters or {"type": "object", "properties": {}}
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


TOOL_CHOICES = frozenset({"auto", "none", "required"})
"""``tool_choice`` strings both APIs take (else a named function)."""


def check_tool_choice(choice: Any, tools: list[FunctionTool]) -> None:
    """Refuse a named ``tool_choice`` that names no tool of the request."""
    if isinstance(choice, dict) and choice.get("name") not in {tool.name for tool in tools}:
        names = ", ".join(tool.name for tool in tools) or "none"
        msg = f"tool_choice names {choice.get('name')!r}, which is not among the tools ({names})"
        raise unsupported(msg)


class ChatTool(BaseModel):
    """``tools[i]`` of a chat completion request: ``{"type": "function", "function": {...}}``."""

    model_config = ConfigDict(extra="ignore")

    type: str
    function: FunctionTool

    @field_validator("type")
    @classmethod
    def _function(cls, value: str) -> str:
        if value != "function":
            msg = f"only function tools are served, not {value!r}"
            raise unsupported(msg)
        return value


class Message(BaseModel):
    """One message of the conversation; content is a string or parts (images for users)."""

    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str | list[dict[str, str]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _parts(cls, value: Any, info: ValidationInfo) -> Any:
        # Checked by hand: a union's error would name each of its members.
        return text_and_image_parts(value, images=info.data.get("role") == "user")

    @model_validator(mode="after")
    def _fits_role(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            msg = f"tool_calls: only assistant messages have them, not {self.role}"
            raise unsupported(msg)
        if self.role == "tool" and not self.tool_call_id:
            msg = "tool_call_id: a tool message needs the id of the call it answers"
            raise unsupported(msg)
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            msg = f"content: a {self.role} message needs content"
            raise unsupported(msg)
        return self


class StreamOptions(BaseModel):
    """``stream_options``: only ``include_usage`` means anything here."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


NEUTRAL: Mapping[str, tuple[Any, str]] = {
    "n": (1, "only one choice (n=1) is served"),
    "top_p": (1, "not supported: set the stack's models' own sampling instead"),
    "presence_penalty": (0, "not supported"),
    "frequency_penalty": (0, "not supported"),
    "logprobs": (False, "not supported: a MoA answer has no single model's log-probabilities"),
    "top_logprobs": (0, "not supported: a MoA answer has no single model's log-probabilities"),
    "logit_bias": ({}, "not supported"),
    "seed": (None, "not supported: each proposer samples with its own seed"),
    "functions": ([], "deprecated by OpenAI and not served: send tools instead"),
    "function_call": ("none", "deprecated by OpenAI and not served: send tool_choice instead"),
}
"""Options taken only at their neutral value (or absent), and why others are refused."""


def neutral_only(value: Any, field: str) -> Any:
    """``value`` if it is absent or neutral; else the refusal that says why."""
    neutral, why = NEUTRAL[field]
    if value is not None and value != neutral:
        raise unsupported(why)
    return value


def chat_answer_format(value: Any) -> AnswerFormat | None:
    """``response_format`` (chat completions) as the answer's format; text is None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        msg = "must be an object such as {'type': 'json_object'}"
        raise unsupported(msg)
    kind = value.get("type", "text")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            msg = "json_schema: {'name': ..., 'schema': {...}} is required with type json_schema"
            raise unsupported(msg)
        return checked_format(kind, spec)
    return checked_format(kind, {})


def checked_format(kind: Any, spec: Mapping[str, Any]) -> AnswerFormat | None:
    """An answer format from its type and (for ``json_schema``) its name, schema and strict."""
    try:
        return AnswerFormat.of(kind, spec)
    except ValueError as error:
        raise unsupported(str(error)) from None


class ApiRequest(BaseModel):
    """What both APIs' requests have: the stack's id, and a conversation in one field."""

    model_config = ConfigDict(extra="ignore")

    conversation_field: ClassVar[str]
    """The field holding the conversation (``messages``, ``input``): errors name it."""

    model: str = Field(min_length=1)


class ChatCompletionRequest(ApiRequest):
    """A ``POST /v1/chat/completions`` body.

    Honoured: ``model`` (which stack), ``messages`` (text, and image parts
    as data URLs in user messages), ``stream``,
    ``stream_options.include_usage``, ``tools`` (functions) and
    ``tool_choice``, ``response_format`` (text, ``json_object``,
    ``json_schema``), and, for the final answer (the aggregator's call)
    only, ``max_completion_tokens`` (or ``max_tokens``), ``temperature`` and
    ``stop``: the proposers keep their stack's settings, so that every
    request gets the same references. Refused with a 400 naming the field:
    ``n`` other than 1, the deprecated ``functions`` and ``function_call``,
    log-probs, ``seed``, ``top_p``, penalties, ``logit_bias``. Fields this
    API does not know (``user``, ``metadata``, ``parallel_tool_calls``,
    newer ones) are ignored, as clients send them freely.
    """

    conversation_field: ClassVar[str] = "messages"

    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stop: list[str] | None = None
    response_format: AnswerFormat | None = None
    tools: list[ChatTool] | None = None
    tool_choice: Any = None
    n: int | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, Any] | None = None
    seed: int | None = None
    functions: list[Any] | None = None
    function_call: Any = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        # OpenAI takes one string or a list of them.
        return [value] if isinstance(value, str) else value

    _format = field_validator("response_format", mode="before")(chat_answer_format)

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or (isinstance(value, str) and value in TOOL_CHOICES):
            return value
        function = value.get("function") if isinstance(value, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not (isinstance(value, dict) and value.get("type") == "function" and name):
            msg = (
                "must be 'auto', 'none', 'required' or "
                "{'type': 'function', 'function': {'name': ...}}"
            )
            raise unsupported(msg)
        tools = [tool.function for tool in info.data.get("tools") or []]
        check_tool_choice({"name": name}, tools)
        return {"type": "function", "function": {"name": name}}

    @field_validator(*NEUTRAL)
    @classmethod
    def _neutral(cls, value: Any, info: Any) -> Any:
        return neutral_only(value, info.field_name)

    @property
    def answer_max_tokens(self) -> int | None:
        """The final answer's token limit: ``max_completion_tokens``, else ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @property
    def function_tools(self) -> list[dict[str, Any]]:
        """The tools, in the format ``ChatMoA.bind_tools`` takes."""
        return [tool.function.openai_tool() for tool in self.tools or []]


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


def model_card(model_id: str, created: int) -> dict[str, Any]:
    """A ``model`` object of ``GET /v1/models``."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": "langchain-moa"}
