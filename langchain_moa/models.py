"""Turning what users pass (chat models or ``provider:model`` strings) into models."""

from __future__ import annotations

import re
from typing import Any

from langchain_core.language_models import BaseChatModel

from langchain_moa.accounting import describe_error

ModelSpec = BaseChatModel | str
"""A chat model instance, or a ``"provider:model"`` string for ``init_chat_model``."""


def resolve_model(spec: Any, where: str, **params: Any) -> BaseChatModel:
    """Return the chat model that ``spec`` names.

    Args:
        spec: A chat model, or a ``"provider:model"`` string.
        where: Where the spec was given (``"layer 2, model 1"``), for errors.
        **params: For a string: the model's settings (``temperature``...).

    Raises:
        ValueError: ``spec`` is neither, or the string names no usable model.
    """
    if isinstance(spec, BaseChatModel):
        return spec
    if isinstance(spec, str):
        if not spec.strip():
            msg = f"{where}: empty model string"
            raise ValueError(msg)
        # Imported here: langchain's import is slow and only strings need it.
        from langchain.chat_models import init_chat_model  # noqa: PLC0415

        try:
            return init_chat_model(spec, **params)
        except Exception as error:
            msg = f"{where}: cannot create a chat model from {spec!r}: {describe_error(error)}"
            raise ValueError(msg) from error
    msg = (
        f"{where}: expected a chat model (a BaseChatModel) or a 'provider:model' "
        f"string, got {type(spec).__name__}"
    )
    raise ValueError(msg)


def model_label(model: BaseChatModel) -> str:
    """The name a chat model gives itself (``model_name``, ``model``, ...)."""
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return model._llm_type  # noqa: SLF001 - the one name every chat model has


def node_slug(label: str) -> str:
    """A short node-name fragment: the last path part, lower case, safe characters.

    LangGraph reserves ``:`` and ``|`` in node names, and ``/`` separates the
    layer from the model in ours.
    """
    tail = label.rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower()
    return re.sub(r"[^a-z0-9._-]+", "-", tail).strip("-") or "model"
