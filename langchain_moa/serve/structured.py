"""Structured answers: ``response_format`` (and the Responses API's ``text.format``).

A request may ask for the final answer as a JSON object (``json_object``) or
as JSON matching a schema (``json_schema``). It is honoured in one of two
ways, chosen by the aggregator (and its fallbacks) alone:

- **natively**, where every aggregator is a langchain-openai chat model (OpenAI,
  and the OpenAI-compatible servers: vLLM, llama.cpp, Together...): the
  format travels with the aggregator's call as its own ``response_format``,
  and the server constrains the answer (the embedded llama.cpp server with
  a grammar made from the schema);
- **by instruction** otherwise: the schema is written at the end of the
  system message, which every layer reads (as tools are, for proposers).

Either way the answer is checked before it is sent: it must parse, be an
object, and match the schema (``jsonschema``). An answer that does not is a
``StructuredAnswerError``, never sent as a success; there is no retry
(each would cost a whole stack), so a client retries as it would any 503.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_openai.chat_models.base import BaseChatOpenAI

from langchain_moa.accounting import BadResponseError
from langchain_moa.graph.prompts import append_system

KINDS = ("text", "json_object", "json_schema")


class StructuredAnswerError(BadResponseError):
    """The final answer is not the JSON the request asked for."""


@dataclass(frozen=True)
class AnswerFormat:
    """What the final answer must be: a JSON object, matching ``schema`` if given."""

    kind: str
    """``json_object`` or ``json_schema``."""
    name: str = "answer"
    """The schema's name (``json_schema``)."""
    schema: Mapping[str, Any] | None = None
    """The JSON schema the answer matches (``json_schema``)."""
    strict: bool = False
    """OpenAI's strict mode: the provider must follow the schema exactly (where it can)."""
    description: str | None = field(default=None, compare=False)
    """What the answer is for, shown to the model."""

    @classmethod
    def of(cls, kind: Any, spec: Mapping[str, Any]) -> AnswerFormat | None:
        """The format ``kind`` (with ``spec``'s name, schema and strict) asks for; text is None.

        Raises:
            ValueError: an unknown kind, or a schema that is not a JSON schema.
        """
        if kind == "text":
            return None
        if kind == "json_object":
            return cls(kind=kind)
        if kind != "json_schema":
            msg = f"type must be one of {', '.join(KINDS)}, not {kind!r}"
            raise ValueError(msg)
        name, schema = spec.get("name"), spec.get("schema")
        if not isinstance(name, str) or not name:
            msg = "json_schema.name: a name is required"
            raise ValueError(msg)
        if not isinstance(schema, dict):
            msg = "json_schema.schema: a JSON schema object is required"
            raise ValueError(msg)  # noqa: TRY004 - pydantic reports ValueError as a 400
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as error:
            msg = f"json_schema.schema is not a valid JSON schema: {error.message}"
            raise ValueError(msg) from None
        description = spec.get("description")
        return cls(
            kind=kind,
            name=name,
            schema=schema,
            strict=bool(spec.get("strict")),
            description=description if isinstance(description, str) else None,
        )

    def openai(self) -> dict[str, Any]:
        """The format as the chat completions API's ``response_format``."""
        if self.kind == "json_object":
            return {"type": "json_object"}
        spec: dict[str, Any] = {"name": self.name, "schema": dict(self.schema or {})}
        if self.strict:
            spec["strict"] = True
        if self.description:
            spec["description"] = self.description
        return {"type": "json_schema", "json_schema": spec}

    def responses(self) -> dict[str, Any]:
        """The format as the Responses API's ``text.format``."""
        if self.kind == "json_object":
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "name": self.name,
            "schema": dict(self.schema or {}),
            "strict": self.strict,
            **({"description": self.description} if self.description else {}),
        }

    def instruction(self) -> str:
        """What a model without native support is told."""
        if self.schema is None:
            return "Answer with one JSON object and nothing else: no prose, no code fence."
        return (
            "Answer with one JSON object and nothing else (no prose, no code fence) "
            f"that matches this JSON schema:\n{json.dumps(self.schema)}"
        )

    def check(self, text: str) -> Any:
        """The answer parsed, if it is what was asked for.

        Raises:
            StructuredAnswerError: it does not parse, is no object, or does not
                match the schema; the message says where.
        """
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            msg = f"the answer is not valid JSON ({error}): {_shown(text)}"
            raise StructuredAnswerError(msg) from None
        if not isinstance(value, dict):
            msg = f"the answer is JSON but not an object: {_shown(text)}"
            raise StructuredAnswerError(msg)
        if self.schema is not None:
            validator = jsonschema.validators.validator_for(self.schema)(self.schema)
            if problem := jsonschema.exceptions.best_match(validator.iter_errors(value)):
                where = "/".join(str(part) for part in problem.absolute_path) or "the answer"
                msg = f"the answer does not match the schema {self.name!r} at {where}: "
                raise StructuredAnswerError(msg + problem.message)
        return value


def _shown(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else f"{text[:limit]}...")


def is_native(aggregators: Sequence[BaseChatModel]) -> bool:
    """Whether every aggregator sends ``response_format`` to an OpenAI-compatible API."""
    return all(isinstance(model, BaseChatOpenAI) for model in aggregators)


def apply(
    answer_format: AnswerFormat,
    aggregators: Sequence[BaseChatModel],
    messages: list[BaseMessage],
    options: dict[str, Any],
) -> tuple[list[BaseMessage], dict[str, Any]]:
    """The conversation and the final answer's call options that ask for ``answer_format``."""
    if is_native(aggregators):
        return messages, {**options, "response_format": answer_format.openai()}
    return append_system(messages, answer_format.instruction()), options
