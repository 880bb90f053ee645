"""The model factory: the one place a model entry becomes a chat model.

``build_stack`` turns a ``StackSpec`` into chat models: a preset's models
written out, each string or ``ModelConfig`` built with the stack's settings
under its own, keys read from the environment variables the entries name.
Model instances pass through as they are. Nothing is called.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import ValidationError

from langchain_moa.accounting import describe_error, known_secret
from langchain_moa.local.server import shared_server
from langchain_moa.openai_compatible import NO_KEY, openai_compatible_model
from langchain_moa.stacks.errors import StackError, describe
from langchain_moa.stacks.presets import (
    LOCAL_LAYERS,
    LOCAL_MAX_TOKENS,
    LOCAL_TEMPERATURE,
    PAPER_MAX_TOKENS,
    PAPER_STACKS,
    PAPER_TEMPERATURE,
    TOGETHER_API_KEY_ENV,
    local_spec,
    paper_spec,
)
from langchain_moa.stacks.spec import (
    GENERATION_SETTINGS,
    LOCAL_MODEL,
    ModelConfig,
    StackSpec,
)

_MODEL_FIELDS = (
    "preset",
    "proposers",
    "layers",
    "proposer_layers",
    "aggregator",
    "base_url",
    "api_key_env",
)
"""The spec's fields that choose models: a preset's own."""

_STACK_FIELDS = tuple(
    name
    for name in StackSpec.model_fields
    if name not in _MODEL_FIELDS and name not in GENERATION_SETTINGS
)
"""What a preset keeps of the spec that names it (its models are its own)."""


@dataclass(frozen=True)
class Stack:
    """A stack's chat models, ready to wire into a graph."""

    layers: list[list[BaseChatModel]]
    """The proposers of each proposer layer."""
    aggregator: BaseChatModel
    """The model that writes the answer."""
    spec: StackSpec
    """The spec with any preset written out."""
    fallbacks: list[BaseChatModel] = field(default_factory=list)
    """Aggregators to try in order when the aggregator fails."""

    @property
    def aggregators(self) -> list[BaseChatModel]:
        """Every model that may write the answer: the aggregator, then its fallbacks."""
        return [self.aggregator, *self.fallbacks]


def expand(spec: StackSpec) -> StackSpec:
    """``spec`` with a preset's (or the embedded stack's) models written out.

    The preset's generation settings (the paper's 0.7 and 2048, the embedded
    stack's 0.7 and 512) are defaults that the spec's own override.

    Raises:
        StackError: a key that a paper preset needs is not in the environment.
    """
    if spec.preset is not None and spec.preset in PAPER_STACKS:  # narrows for mypy
        base = paper_spec(spec.preset, base_url=spec.base_url, api_key_env=spec.api_key_env)
        _require_keys(spec.preset, base)
        defaults = {"temperature": PAPER_TEMPERATURE, "max_tokens": PAPER_MAX_TOKENS}
    elif spec.is_embedded:
        base = local_spec(layers=spec.layers or LOCAL_LAYERS)
        defaults = {"temperature": LOCAL_TEMPERATURE, "max_tokens": LOCAL_MAX_TOKENS}
    else:
        return spec
    given = spec.model_fields_set
    settings = {k: getattr(spec, k) for k in (*_STACK_FIELDS, *GENERATION_SETTINGS) if k in given}
    return StackSpec(
        proposers=base.proposers,
        layers=base.layers,
        aggregator=base.aggregator,
        **{**defaults, **settings},
    )


def _require_keys(preset: str, stack: StackSpec) -> None:
    """Every variable a preset's entries name must be set: one error names them all."""
    entries = [*(stack.proposers or []), stack.aggregator]
    needed = dict.fromkeys(
        e.api_key_env for e in entries if isinstance(e, ModelConfig) and e.api_key_env
    )
    missing = [name for name in needed if not os.environ.get(name)]
    if missing:
        hint = (
            " (or give base_url, and its key, of another server with the same models)"
            if TOGETHER_API_KEY_ENV in missing
            else ""
        )
        msg = f"preset {preset!r} needs {' and '.join(missing)} set in the environment{hint}"
        raise StackError(msg)


def build_stack(spec: StackSpec) -> Stack:
    """Every chat model of ``spec``; its errors name the entry's key path.

    Raises:
        StackError: a key's environment variable is not set, a provider
            cannot build a model, or a setting is not the provider's.
    """
    spec = expand(spec)
    defaults = spec.generation_defaults()
    layers = [
        [
            chat_model(entry, defaults, where=_where(spec, number, index))
            for index, entry in enumerate(layer)
        ]
        for number, layer in enumerate(spec.layer_entries())
    ]
    assert spec.aggregator is not None  # noqa: S101 - expand() always names one
    aggregator = chat_model(spec.aggregator, defaults, where="aggregator")
    fallbacks = [
        chat_model(entry, defaults, where=f"fallbacks[{index}]")
        for index, entry in enumerate(spec.fallbacks or [])
    ]
    layers = spec.strategy.proposers(
        layers, aggregator, lambda entry, where: chat_model(entry, defaults, where=where)
    )
    return Stack(layers=layers, aggregator=aggregator, spec=spec, fallbacks=fallbacks)


def _where(spec: StackSpec, layer: int, index: int) -> str:
    if spec.proposer_layers is not None:
        return f"proposer_layers[{layer}][{index}]"
    return f"proposers[{index}]"


def _key(name: str, where: str) -> str:
    value = os.environ.get(name)
    if not value:
        msg = f"{where}.api_key_env: environment variable {name} is not set"
        raise StackError(msg)
    # Whatever the variable is called, errors that echo this key get it masked.
    return known_secret(value)


def chat_model(
    entry: Any, defaults: Mapping[str, Any] | None = None, *, where: str = "model"
) -> BaseChatModel:
    """The chat model one entry describes.

    Args:
        entry: A chat model (returned as it is), a ``"provider:model"``
            string, ``"local-model"``, or a ``ModelConfig`` or its table.
        defaults: The stack's generation settings, under the entry's own.
        where: The entry's key path, for errors.

    Raises:
        StackError: naming ``where``.
    """
    if isinstance(entry, BaseChatModel):
        return entry
    try:
        config = entry if isinstance(entry, ModelConfig) else ModelConfig.model_validate(entry)
    except ValidationError as error:
        raise describe(error).under(where) from None
    settings = config.settings(defaults or {})
    if config.model == LOCAL_MODEL:
        return shared_server().chat_model(**settings)
    provider, _, name = config.model.partition(":")
    key_env = settings.pop("api_key_env", None)
    api_key = _key(key_env, where) if key_env else None
    if provider == "openai" and "base_url" in settings:
        # A server of the user's own: an OPENAI_API_KEY must not travel there.
        return openai_compatible_model(
            name, base_url=settings.pop("base_url"), api_key=api_key or NO_KEY, **settings
        )
    if api_key is not None:
        settings["api_key"] = api_key
    if provider == "openai":
        settings.setdefault("stream_usage", True)  # usage on streamed answers too
    return _init_chat_model(config.model, settings, set(config.provider_settings), where)


def _init_chat_model(
    spec: str, settings: dict[str, Any], extras: set[str], where: str
) -> BaseChatModel:
    # Imported here: langchain's import is slow and only strings need it.
    from langchain.chat_models import init_chat_model  # noqa: PLC0415

    try:
        with warnings.catch_warnings():
            # Unknown settings are reported below, as errors naming their key.
            warnings.filterwarnings("ignore", message=".*not default parameter")
            model = init_chat_model(spec, **settings)
    except Exception as error:
        msg = f"{where}: cannot create a chat model from {spec!r}: {describe_error(error)}"
        raise StackError(msg) from error
    # Most provider classes take an unknown setting into model_kwargs, to
    # send with every request; in a stack it is more likely a typo.
    passed_on = getattr(model, "model_kwargs", None) or {}
    for key in sorted(extras):
        if key in passed_on and key != "model_kwargs":
            msg = f"{where}.{key}: unknown key (not a setting of {type(model).__name__})"
            raise StackError(msg)
    return model


def model_label(model: BaseChatModel) -> str:
    """The name a chat model gives itself (``model_name``, ``model``, ...)."""
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return model._llm_type  # noqa: SLF001 - the one name every chat model has
