"""The Responses API's request (``POST /v1/responses``), checked.

Stateless, as ``moa serve`` keeps nothing: the whole conversation comes in
``input`` each time, so ``previous_response_id``, ``conversation``, stored
prompts, item references, ``background`` and ``store: true`` are refused
with a 400 naming the field (a client that sends ``store`` false, or leaves
it out, is answered; the answer is not kept either way). Honoured:
``model``, ``input`` (a string, or message, ``function_call`` and
``function_call_output`` items; images as data URLs), ``instructions``,
function ``tools`` and ``tool_choice``, ``text.format`` (text,
``json_object``, ``json_schema``), ``stream``, and for the final answer
only ``max_output_tokens`` and ``temperature``. Built-in tools (web search,
file search, code interpreter...) are refused naming them. Fields that
change nothing here (``metadata``, ``user``, ``parallel_tool_calls``,
``truncation``, ``include``, ``reasoning``...) are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from langchain_moa.serve.openai_format import (
    TOOL_CHOICES,
    ApiRequest,
    FunctionTool,
    check_tool_choice,
    checked_format,
    function_name,
    image_data,
    json_arguments,
    neutral_only,
    unsupported,
)
from langchain_moa.serve.structured import AnswerFormat

_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


def _content(value: Any, *, images: bool) -> Any:
    """A message item's content as LangChain content: a string, or text and image blocks."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        msg = "must be a string or a list of content parts"
        raise unsupported(msg)
    parts: list[dict[str, str]] = []
    for index, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image" and images:
            if part.get("file_id"):
                msg = f"part {index}: file ids are not served (nothing is stored): send a data URL"
                raise unsupported(msg)
            try:
                mime_type, data = image_data(part.get("image_url"))
            except PydanticCustomError as error:
                msg = f"part {index}: {error.message()}"
                raise unsupported(msg) from None
            parts.append({"type": "image", "mime_type": mime_type, "base64": data})
        else:
            allowed = "input_text and input_image" if images else "text"
            msg = f"part {index}: only {allowed} parts are served here, not {kind!r}"
            raise unsupported(msg)
    if all(part["type"] == "text" for part in parts):
        # Plain text reads the same to every model, and as the chat API's text does.
        return "".join(part["text"] for part in parts)
    return parts


class InputMessage(BaseModel):
    """A message item: ``{"role", "content"}`` (``type: "message"`` optional)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[dict[str, str]]

    @field_validator("content", mode="before")
    @classmethod
    def _parts(cls, value: Any, info: ValidationInfo) -> Any:
        return _content(value, images=info.data.get("role") == "user")


class FunctionCallItem(BaseModel):
    """A function call the answer made earlier (``type: "function_call"``)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str
    arguments: str = "{}"

    _json_object = field_validator("arguments")(json_arguments)


class FunctionCallOutput(BaseModel):
    """A function call's result (``type: "function_call_output"``)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str

    @field_validator("output", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        # The output may be content parts; a tool message's content here is text.
        if isinstance(value, list):
            return _content(value, images=False)
        return value


_ITEM_KINDS = frozenset({"message", "function_call", "function_call_output"})


def _item_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type", "message" if "role" in value else None)
    else:
        kind = getattr(value, "type", None)
    return kind if kind in _ITEM_KINDS else None


Item = Annotated[
    Annotated[InputMessage, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutput, Tag("function_call_output")],
    Discriminator(
        _item_kind,
        custom_error_type="unsupported",
        custom_error_message=(
            "only message, function_call and function_call_output items are served "
            "(nothing is stored, so no item references or built-in tool calls)"
        ),
    ),
]


class ResponsesTool(BaseModel):
    """``tools[i]``: ``{"type": "function", "name", "description", "parameters", "strict"}``."""

    model_config = ConfigDict(extra="ignore")

    type: str
    # Optional here so that a built-in tool's error names its type, not a missing name.
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("type")
    @classmethod
    def _function(cls, value: str) -> str:
        if value != "function":
            msg = (
                f"built-in tools are not served ({value!r}): "
                "only function tools, which the client runs"
            )
            raise unsupported(msg)
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else function_name(value)

    @model_validator(mode="after")
    def _named(self) -> ResponsesTool:
        if self.name is None:
            msg = "name: a function tool needs a name"
            raise unsupported(msg)
        return self

    def function(self) -> FunctionTool:
        """The tool as a checked function definition."""
        return FunctionTool(
            name=self.name or "",
            description=self.description,
            parameters=self.parameters,
            strict=self.strict,
        )


class TextOptions(BaseModel):
    """``text``: only ``format`` means anything here."""

    model_config = ConfigDict(extra="ignore")

    format: AnswerFormat | None = None

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> AnswerFormat | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            msg = "must be an object such as {'type': 'json_schema', ...}"
            raise unsupported(msg)
        return checked_format(value.get("type", "text"), value)


_STATEFUL = "this server keeps nothing: send the whole conversation in input"


class ResponsesRequest(ApiRequest):
    """A ``POST /v1/responses`` body (see the module's docstring for what is honoured)."""

    conversation_field: ClassVar[str] = "input"

    input: list[Item]
    instructions: str | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: Any = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    text: TextOptions | None = None
    stream: bool = False
    top_p: float | None = None
    top_logprobs: int | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    prompt: Any = None
    store: bool | None = None
    background: bool | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _something(cls, value: Any) -> Any:
        if not value:
            msg = "there is nothing to answer"
            raise unsupported(msg)
        # A string is the user's one message.
        return [{"role": "user", "content": value}] if isinstance(value, str) else value

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or (isinstance(value, str) and value in TOOL_CHOICES):
            return value
        if isinstance(value, dict) and value.get("type") == "function" and value.get("name"):
            tools = [tool.function() for tool in info.data.get("tools") or []]
            check_tool_choice(value, tools)
            return {"type": "function", "name": value["name"]}
        kind = value.get("type") if isinstance(value, dict) else value
        msg = (
            "must be 'auto', 'none', 'required' or {'type': 'function', 'name': ...}, "
            f"not {kind!r} (built-in tools are not served)"
        )
        raise unsupported(msg)

    @field_validator("top_p", "top_logprobs")
    @classmethod
    def _neutral(cls, value: Any, info: Any) -> Any:
        return neutral_only(value, info.field_name)

    @field_validator("previous_response_id", "conversation", "prompt")
    @classmethod
    def _stateless(cls, value: Any, info: Any) -> Any:
        if value is not None:
            what = {"prompt": "stored prompts are not served"}.get(info.field_name, "not served")
            msg = f"{what}: {_STATEFUL}"
            raise unsupported(msg)
        return value

    @field_validator("store", "background")
    @classmethod
    def _not_kept(cls, value: bool | None, info: ValidationInfo) -> bool | None:  # noqa: FBT001 - pydantic's signature
        if value:
            msg = f"{info.field_name}: true is not served: {_STATEFUL}; send false or leave it out"
            raise unsupported(msg)
        return value

    @property
    def function_tools(self) -> list[dict[str, Any]]:
        """The tools, in the chat completions format ``ChatMoA.bind_tools`` takes."""
        return [tool.function().openai_tool() for tool in self.tools or []]

    @property
    def chat_tool_choice(self) -> Any:
        """``tool_choice`` in the chat completions format (the named form differs)."""
        if isinstance(self.tool_choice, dict):
            return {"type": "function", "function": {"name": self.tool_choice["name"]}}
        return self.tool_choice

    @property
    def answer_format(self) -> AnswerFormat | None:
        """``text.format``, if it asks for JSON."""
        return self.text.format if self.text else None
