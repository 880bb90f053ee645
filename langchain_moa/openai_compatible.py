"""Chat models for OpenAI-compatible servers other than OpenAI's (vLLM, llama.cpp, Together)."""

from __future__ import annotations

from typing import Any, TypeVar

from langchain_openai import ChatOpenAI

NO_KEY = "no-key-needed"
"""Sent to a server of the user's own that was given no key: ChatOpenAI insists
on one, and a real key must never go to a server it was not issued for."""


M = TypeVar("M", bound=ChatOpenAI)


def openai_compatible_model(
    model: str,
    *,
    base_url: str,
    api_key: str,
    model_class: type[M] = ChatOpenAI,  # type: ignore[assignment]  # the bound's own default
    **kwargs: Any,
) -> M:
    """A ``ChatOpenAI`` for a model on an OpenAI-compatible server other than OpenAI's.

    ``max_tokens`` travels as the request's ``max_tokens``: langchain-openai
    1.x sends it as ``max_completion_tokens``, which some servers ignore
    (llama.cpp's generates until its context is full). Token usage is asked
    for on streamed answers too, so that a stack's accounting is complete.

    Args:
        model: The model id the server knows.
        base_url: The endpoint, ending in ``/v1``.
        api_key: The server's key.
        model_class: ``ChatOpenAI`` or a subclass of it for the server.
        **kwargs: Other ``ChatOpenAI`` settings (``temperature``, ``seed``...).
    """
    if (max_tokens := kwargs.pop("max_tokens", None)) is not None:
        kwargs["extra_body"] = {**(kwargs.get("extra_body") or {}), "max_tokens": max_tokens}
    kwargs.setdefault("stream_usage", True)
    return model_class(model=model, base_url=base_url, api_key=api_key, **kwargs)
