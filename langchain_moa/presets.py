"""Named models and stacks, so a command line can say which model to run."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from langchain_moa.chat_models import ChatMoA
from langchain_moa.local import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, shared_server
from langchain_moa.models import resolve_model

LOCAL_MOA = "local"
"""The embedded MoA stack: 3 SmolLM2 proposers (three seeds), 2 layers."""
LOCAL_MODEL = "local-model"
"""The embedded SmolLM2-135M-Instruct alone (a baseline, a proposer or a judge)."""


def model_from_spec(
    spec: str,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
) -> BaseChatModel:
    """The chat model a spec names: a preset above, or ``"provider:model"``.

    ``max_tokens`` and ``temperature`` configure every model the spec names.

    Raises:
        ValueError: the spec names no preset and no usable model.
    """
    if spec == LOCAL_MOA:
        return ChatMoA.local(max_tokens=max_tokens, temperature=temperature)
    if spec == LOCAL_MODEL:
        return shared_server().chat_model(
            max_tokens=max_tokens, temperature=temperature, seed=0, stream_usage=True
        )
    if ":" not in spec:
        msg = f"unknown model {spec!r}: use {LOCAL_MOA!r}, {LOCAL_MODEL!r} or 'provider:model'"
        raise ValueError(msg)
    return resolve_model(spec, "model", max_tokens=max_tokens, temperature=temperature)
