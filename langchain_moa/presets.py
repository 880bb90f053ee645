"""Named models and stacks: the paper's MoA set-ups and the embedded model.

The paper's stacks (``moa``, ``moa-lite``, ``moa-gpt4o``) use the open models
its reference code (togethercomputer/MoA) called on Together's API, under the
same model ids, so any OpenAI-compatible server that serves those names (vLLM,
a gateway) can stand in for Together with ``base_url``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from langchain_moa.chat_models import ChatMoA
from langchain_moa.local import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, shared_server
from langchain_moa.models import resolve_model

LOCAL_MOA = "local"
"""The embedded MoA stack: 3 SmolLM2 proposers (three seeds), 2 layers."""
LOCAL_MODEL = "local-model"
"""The embedded SmolLM2-135M-Instruct alone (a baseline, a proposer or a judge)."""

TOGETHER_BASE_URL = "https://api.together.xyz/v1"
"""Together's OpenAI-compatible endpoint, where the paper's open models ran."""
TOGETHER_API_KEY_ENV = "TOGETHER_API_KEY"
"""The environment variable the reference code reads Together's key from."""
OPENAI_API_KEY_ENV = "OPENAI_API_KEY"
"""The environment variable OpenAI's key is read from (GPT-4o)."""
NO_KEY = "no-key-needed"
"""Sent to a server of the user's own that was given no key: ChatOpenAI insists
on one, and a real key must never go to a server it was not issued for."""

PAPER_MAX_TOKENS = 2048
"""The reference code's max_tokens for AlpacaEval and FLASK generation."""
PAPER_TEMPERATURE = 0.7
"""The reference code's temperature everywhere."""

PAPER_PROPOSERS = (
    "microsoft/WizardLM-2-8x22B",
    "Qwen/Qwen1.5-110B-Chat",
    "Qwen/Qwen1.5-72B-Chat",
    "meta-llama/Llama-3-70b-chat-hf",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "databricks/dbrx-instruct",
)
"""The paper's six proposers as Together model ids, in the order of the
reference code's ``reference_models`` (which fixes how references are numbered)."""
GPT_4O = "gpt-4o-2024-05-13"
"""The GPT-4o the paper used as an aggregator ("GPT-4o (05/13)"), pinned so
that results stay comparable when the ``gpt-4o`` alias moves."""


@dataclass(frozen=True)
class PaperStack:
    """One of the paper's MoA configurations."""

    layers: int
    """Layers counting the aggregator's."""
    aggregator: str
    """The aggregator's model id."""
    aggregator_on_openai: bool
    """Whether the aggregator is an OpenAI model (else it is served with the proposers)."""
    proposers: tuple[str, ...] = PAPER_PROPOSERS
    """The proposers of every proposer layer."""


PAPER_STACKS = MappingProxyType(
    {
        "moa": PaperStack(
            layers=3, aggregator="Qwen/Qwen1.5-110B-Chat", aggregator_on_openai=False
        ),
        "moa-lite": PaperStack(
            layers=2, aggregator="Qwen/Qwen1.5-72B-Chat", aggregator_on_openai=False
        ),
        "moa-gpt4o": PaperStack(layers=3, aggregator=GPT_4O, aggregator_on_openai=True),
    }
)
"""The paper's MoA, MoA-Lite and MoA w/ GPT-4o, by preset name."""

PRESETS: tuple[str, ...] = (*PAPER_STACKS, LOCAL_MOA)
"""Every name ``preset`` accepts."""


def openai_compatible_model(
    model: str,
    *,
    base_url: str,
    api_key: str,
    max_tokens: int | None,
    temperature: float | None,
    **kwargs: Any,
) -> ChatOpenAI:
    """A ``ChatOpenAI`` for a model on an OpenAI-compatible server other than OpenAI's.

    ``max_tokens`` travels as the request's ``max_tokens``: ChatOpenAI would
    send it as ``max_completion_tokens``, which some servers ignore (llama.cpp's
    generates until its context is full). Token usage is asked for on streamed
    answers too, so that a stack's accounting is complete.

    Args:
        model: The model id the server knows.
        base_url: The endpoint, ending in ``/v1``.
        api_key: The server's key.
        max_tokens: Longest answer; None leaves it to the server.
        temperature: Sampling temperature; None leaves it to the server.
        **kwargs: Other ``ChatOpenAI`` settings (``seed``, ``top_p``...).
    """
    if max_tokens is not None:
        kwargs["extra_body"] = {**kwargs.get("extra_body", {}), "max_tokens": max_tokens}
    if temperature is not None:
        kwargs["temperature"] = temperature
    kwargs.setdefault("stream_usage", True)
    return ChatOpenAI(model=model, base_url=base_url, api_key=api_key, **kwargs)


def _environment_key(name: str) -> str | None:
    # An empty variable is as good as none: sending "" only earns a 401 later.
    return os.environ.get(name) or None


def preset(
    name: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    max_tokens: int = PAPER_MAX_TOKENS,
    temperature: float = PAPER_TEMPERATURE,
    **moa_fields: Any,
) -> ChatMoA:
    """One of the paper's MoA stacks, or the embedded one, by name.

    ``moa`` (3 layers, Qwen1.5-110B-Chat aggregates), ``moa-lite`` (2 layers,
    Qwen1.5-72B-Chat aggregates) and ``moa-gpt4o`` (3 layers, OpenAI's GPT-4o
    aggregates) have the paper's six open proposers in every proposer layer,
    reached on Together's OpenAI-compatible API with ``TOGETHER_API_KEY``;
    GPT-4o is reached on OpenAI's with ``OPENAI_API_KEY``. ``local`` is the
    embedded SmolLM2 stack (``ChatMoA.local``). Nothing is called until the
    stack is.

    Args:
        name: One of ``PRESETS``.
        base_url: Another OpenAI-compatible server for the open models (one
            that serves them under Together's ids, e.g. vLLM); GPT-4o stays on
            OpenAI's.
        api_key: That server's key. With ``base_url`` and no key, none is
            sent: Together's key only ever goes to Together.
        max_tokens: Longest answer of each call.
        temperature: Sampling temperature of every call.
        **moa_fields: Other ``ChatMoA`` fields (``prompt``, ``min_proposers``,
            ``aggregation``, ``model_name``).

    Raises:
        ValueError: The name is no preset, ``base_url`` or ``api_key`` was
            given for ``local``, or a key the stack needs is not in the
            environment (the message names the variable, never a key).
    """
    if name == LOCAL_MOA:
        if base_url is not None or api_key is not None:
            msg = (
                f"preset {LOCAL_MOA!r} runs on the embedded model: "
                "base_url and api_key do not apply"
            )
            raise ValueError(msg)
        return ChatMoA.local(max_tokens=max_tokens, temperature=temperature, **moa_fields)
    stack = PAPER_STACKS.get(name)
    if stack is None:
        msg = f"unknown preset {name!r}: choose from {', '.join(PRESETS)}"
        raise ValueError(msg)

    own_server = base_url is not None and base_url.rstrip("/") != TOGETHER_BASE_URL
    open_key = api_key or (NO_KEY if own_server else _environment_key(TOGETHER_API_KEY_ENV))
    openai_key = _environment_key(OPENAI_API_KEY_ENV) if stack.aggregator_on_openai else None
    if open_key is None or (stack.aggregator_on_openai and openai_key is None):
        missing = [TOGETHER_API_KEY_ENV] if open_key is None else []
        if stack.aggregator_on_openai and openai_key is None:
            missing.append(OPENAI_API_KEY_ENV)
        hint = (
            " (or give base_url, and its key, of another server with the same models)"
            if open_key is None
            else ""
        )
        msg = f"preset {name!r} needs {' and '.join(missing)} set in the environment{hint}"
        raise ValueError(msg)

    def served(model: str) -> ChatOpenAI:
        return openai_compatible_model(
            model,
            base_url=base_url or TOGETHER_BASE_URL,
            api_key=open_key,
            max_tokens=max_tokens,
            temperature=temperature,
        )

    aggregator = (
        ChatOpenAI(
            model=stack.aggregator,
            api_key=openai_key,
            max_tokens=max_tokens,
            temperature=temperature,
            stream_usage=True,
        )
        if stack.aggregator_on_openai
        else served(stack.aggregator)
    )
    return ChatMoA(
        proposers=[served(model) for model in stack.proposers],
        aggregator=aggregator,
        layers=stack.layers,
        **moa_fields,
    )


def model_from_spec(
    spec: str,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
) -> BaseChatModel:
    """The chat model a spec names: a preset (``PRESETS``), ``local-model`` or ``"provider:model"``.

    ``max_tokens`` and ``temperature`` configure every model the spec names.

    Raises:
        ValueError: the spec names no preset and no usable model, or a
            preset's key is not in the environment.
    """
    if spec in PRESETS:
        return preset(spec, max_tokens=max_tokens, temperature=temperature)
    if spec == LOCAL_MODEL:
        return shared_server().chat_model(
            max_tokens=max_tokens, temperature=temperature, seed=0, stream_usage=True
        )
    if ":" not in spec:
        names = ", ".join(repr(name) for name in (*PRESETS, LOCAL_MODEL))
        msg = f"unknown model {spec!r}: use a preset ({names}) or 'provider:model'"
        raise ValueError(msg)
    return resolve_model(spec, "model", max_tokens=max_tokens, temperature=temperature)
