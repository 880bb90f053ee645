"""MoA stacks described in a YAML or TOML file.

A file names a preset::

    preset: moa-lite
    base_url: http://127.0.0.1:8000/v1     # optional: a server with Together's model ids
    api_key_env: VLLM_API_KEY              # optional: the variable holding its key

or describes a stack, layer by layer or as the paper does (``proposers`` and a
layer count), with any ChatOpenAI or ``init_chat_model`` settings per model::

    layers:
      - ["openai:gpt-4o-mini", {model: local-model, seed: 1}]
      - ["openai:gpt-4o-mini"]
    aggregator: {model: "openai:gpt-4o", temperature: 0.2}
    min_proposers: 1

Keys are never in the file: ``api_key_env`` names the environment variable
that holds one. Every mistake is a ``ValueError`` naming the file and the key
path (``stack.yaml: layers[1][0].temprature: unknown key``).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, get_args

import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from langchain_moa.chat_models import PAPER_LAYERS, ChatMoA
from langchain_moa.graph import Aggregation
from langchain_moa.local import shared_server
from langchain_moa.models import resolve_model
from langchain_moa.presets import (
    LOCAL_MOA,
    LOCAL_MODEL,
    NO_KEY,
    PAPER_MAX_TOKENS,
    PAPER_TEMPERATURE,
    PRESETS,
    openai_compatible_model,
    preset,
)

CONFIG_SUFFIXES = (".yaml", ".yml", ".toml")
"""File name endings ``load_config`` reads; the ending picks the format."""

_MOA_KEYS = frozenset({"prompt", "min_proposers", "aggregation", "model_name"})
_PRESET_KEYS = frozenset({"preset", "base_url", "api_key_env", "max_tokens", "temperature"})
_STACK_KEYS = frozenset({"layers", "proposers", "aggregator", "max_tokens", "temperature"})
_ENTRY_KEYS = frozenset({"model", "base_url", "api_key_env", "temperature", "max_tokens", "seed"})

# ChatOpenAI's settings under the names a config would use; ours replace these.
_OPENAI_RENAMED = {
    "model_name": "model",
    "openai_api_base": "base_url",
    "max_completion_tokens": "max_tokens",
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _openai_settings() -> frozenset[str]:
    """Every name ChatOpenAI takes a setting by (field names and aliases)."""
    names = set()
    for field_name, field in ChatOpenAI.model_fields.items():
        names.add(field_name)
        if isinstance(field.alias, str):
            names.add(field.alias)
    return frozenset(names)


_OPENAI_SETTINGS = _openai_settings()


def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return lowered in {"api_key", "password", "secret", "token"} or lowered.endswith(
        ("_api_key", "_secret", "_password")
    )


def _shown(value: Any) -> str:
    """A value for an error message: scalars as written, containers by kind."""
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Checker:
    """Validates a parsed config; every error names the source and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> NoReturn:
        where = f"{self.source}: {path}" if path else self.source
        msg = f"{where}: {problem}"
        raise ValueError(msg)

    def unknown(self, path: str, key: str, known: frozenset[str]) -> NoReturn:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.fail(_join(path, key), f"unknown key{hint}")

    def integer(self, value: Any, path: str, *, minimum: int) -> None:
        # bool is an int to Python, never to someone writing a config.
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, got {_shown(value)}")
        if value < minimum:
            self.fail(path, f"must be at least {minimum}, got {value}")

    def number(self, value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected a number, got {_shown(value)}")
        if value < 0:
            self.fail(path, f"must not be negative, got {value}")

    def string(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {_shown(value)}")
        if not value.strip():
            self.fail(path, "must not be empty")

    def env_name(self, value: Any, path: str) -> None:
        # Never echo the value: a mistaken api_key_env is most likely a key.
        if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
            self.fail(
                path,
                "expected the name of an environment variable (letters, digits and _) "
                "that holds the key, not the key itself",
            )

    def generation(self, table: Mapping[str, Any], path: str, *, nullable: bool) -> None:
        """``temperature`` and ``max_tokens``; null leaves them to the provider."""
        for key in ("temperature", "max_tokens"):
            if key not in table or (nullable and table[key] is None):
                continue
            if key == "temperature":
                self.number(table[key], _join(path, key))
            else:
                self.integer(table[key], _join(path, key), minimum=1)

    def moa_fields(self, config: Mapping[str, Any]) -> None:
        for key in ("prompt", "model_name"):
            if key in config:
                self.string(config[key], key)
        if "min_proposers" in config:
            self.integer(config["min_proposers"], "min_proposers", minimum=1)
        choices = get_args(Aggregation)
        if "aggregation" in config and config["aggregation"] not in choices:
            self.fail(
                "aggregation",
                f"expected one of {', '.join(map(repr, choices))}, "
                f"got {_shown(config['aggregation'])}",
            )

    def top(self, config: Any) -> None:
        if not isinstance(config, Mapping):
            self.fail("", f"expected a table of settings at the top, got {_shown(config)}")
        for key in config:
            if not isinstance(key, str):
                self.fail("", f"keys must be strings, got {_shown(key)}")
            if _is_secret(key):
                self.fail(key, "keys do not belong in config files: use api_key_env")
        if "preset" in config:
            self.preset(config)
        else:
            self.stack(config)
        self.moa_fields(config)

    def preset(self, config: Mapping[str, Any]) -> None:
        for key in config:
            if key in _STACK_KEYS - _PRESET_KEYS:
                self.fail(key, "not allowed with preset: a preset fixes its models")
            if key not in _PRESET_KEYS | _MOA_KEYS:
                self.unknown("", key, _PRESET_KEYS | _MOA_KEYS)
        name = config["preset"]
        if name not in PRESETS:
            self.fail("preset", f"expected one of {', '.join(PRESETS)}, got {_shown(name)}")
        if name == LOCAL_MOA:
            for key in ("base_url", "api_key_env"):
                if key in config:
                    self.fail(key, f"does not apply to preset {LOCAL_MOA!r}")
        if "base_url" in config:
            self.string(config["base_url"], "base_url")
        if "api_key_env" in config:
            self.env_name(config["api_key_env"], "api_key_env")
        self.generation(config, "", nullable=False)

    def stack(self, config: Mapping[str, Any]) -> None:
        for key in config:
            if key in _PRESET_KEYS - _STACK_KEYS:
                self.fail(key, "only with preset: set it on each model instead")
            if key not in _STACK_KEYS | _MOA_KEYS:
                self.unknown("", key, _STACK_KEYS | _MOA_KEYS | {"preset"})
        self.generation(config, "", nullable=True)
        layers = config.get("layers")
        if "proposers" in config:
            self.proposers(config["proposers"], layers)
            sizes = [len(config["proposers"])]
        elif isinstance(layers, list):
            sizes = self.layers(layers)
        elif layers is None:
            self.fail("", "no proposers: give layers (lists of models) or proposers")
        else:
            self.fail(
                "layers",
                f"expected lists of models (or, with proposers, a count), got {_shown(layers)}",
            )
        if "aggregator" not in config:
            self.fail("aggregator", "missing: name the model that writes the final answer")
        self.entry(config["aggregator"], "aggregator")
        smallest = min(sizes)
        if config.get("min_proposers", 1) > smallest:
            self.fail(
                "min_proposers",
                f"{config['min_proposers']} is more than the smallest layer's "
                f"{smallest} proposer(s)",
            )

    def proposers(self, proposers: Any, layers: Any) -> None:
        if not isinstance(proposers, list) or not proposers:
            self.fail("proposers", f"expected a non-empty list of models, got {_shown(proposers)}")
        for index, entry in enumerate(proposers):
            self.entry(entry, f"proposers[{index}]")
        if isinstance(layers, list):
            self.fail("layers", "with proposers, layers is a count: give one or the other as lists")
        if layers is not None:
            self.integer(layers, "layers", minimum=2)

    def layers(self, layers: list[Any]) -> list[int]:
        if not layers:
            self.fail("layers", "empty: give at least one layer of proposers")
        for number, layer in enumerate(layers):
            path = f"layers[{number}]"
            if not isinstance(layer, list) or not layer:
                self.fail(path, f"expected a non-empty list of models, got {_shown(layer)}")
            for index, entry in enumerate(layer):
                self.entry(entry, f"{path}[{index}]")
        return [len(layer) for layer in layers]

    def model(self, spec: Any, path: str) -> None:
        self.string(spec, path)
        if spec == LOCAL_MOA:
            self.fail(path, f"{LOCAL_MOA!r} is a whole stack, not a model: use {LOCAL_MODEL!r}")
        if spec != LOCAL_MODEL:
            provider, _, name = spec.partition(":")
            if not provider.strip() or not name.strip():
                self.fail(path, f"expected 'provider:model' or {LOCAL_MODEL!r}, got {_shown(spec)}")

    def entry_key(self, key: Any, path: str, *, local: bool, on_openai: bool) -> None:
        """One key of a model table; ``on_openai``: the model is a ChatOpenAI."""
        where = _join(path, key)
        if not isinstance(key, str):
            self.fail(path, f"keys must be strings, got {_shown(key)}")
        if _is_secret(key):
            self.fail(where, "keys do not belong in config files: use api_key_env")
        if local and key in {"base_url", "api_key_env"}:
            self.fail(where, f"does not apply to {LOCAL_MODEL!r} (the embedded server)")
        if on_openai and key in _OPENAI_RENAMED:
            self.fail(where, f"write it as {_OPENAI_RENAMED[key]!r}")
        # Other providers' settings are checked when their model is built.
        if on_openai and key not in _ENTRY_KEYS | _OPENAI_SETTINGS:
            self.unknown(path, key, _ENTRY_KEYS | _OPENAI_SETTINGS)

    def entry(self, entry: Any, path: str) -> None:
        if isinstance(entry, str):
            self.model(entry, path)
            return
        if not isinstance(entry, Mapping):
            self.fail(path, f"expected a model string or table, got {_shown(entry)}")
        if "model" not in entry:
            self.fail(_join(path, "model"), "missing: 'provider:model' or 'local-model'")
        self.model(entry["model"], _join(path, "model"))
        local = entry["model"] == LOCAL_MODEL
        on_openai = local or entry["model"].startswith("openai:")
        for key in entry:
            self.entry_key(key, path, local=local, on_openai=on_openai)
        self.generation(entry, path, nullable=True)
        if "seed" in entry:
            self.integer(entry["seed"], _join(path, "seed"), minimum=0)
        if "base_url" in entry:
            self.string(entry["base_url"], _join(path, "base_url"))
        if "api_key_env" in entry:
            self.env_name(entry["api_key_env"], _join(path, "api_key_env"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key twice in one table (YAML keeps the last)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # noqa: FBT001, FBT002 - PyYAML's signature
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                msg = f"line {line}: key {key!r} given twice"
                raise yaml.constructor.ConstructorError(None, None, msg, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            msg = f"{path}: not valid TOML: {error}"
            raise ValueError(msg) from error
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        msg = f"{path}: not valid YAML: {error}"
        raise ValueError(msg) from error


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a stack's config file (YAML or TOML, by its ending).

    Nothing is built and no key is read: this checks the file's shape only.
    Settings of providers other than OpenAI are checked when the model is
    built (``chat_moa_from_config``).

    Args:
        path: A ``.yaml``, ``.yml`` or ``.toml`` file.

    Returns:
        The file's settings, as written.

    Raises:
        FileNotFoundError: There is no such file.
        ValueError: The file is not valid YAML or TOML, or a setting is
            unknown, missing or of the wrong type; the message names the file
            and the key path.
    """
    path = Path(path)
    if path.suffix.lower() not in CONFIG_SUFFIXES:
        msg = f"{path}: unsupported config format {path.suffix!r}: use {', '.join(CONFIG_SUFFIXES)}"
        raise ValueError(msg)
    if not path.exists():
        msg = f"config file not found: {path}"
        raise FileNotFoundError(msg)
    if not path.is_file():
        msg = f"{path}: not a file"
        raise ValueError(msg)
    config = _parse(path)
    _Checker(str(path)).top(config)
    return dict(config)


def _key_from_environment(name: str, path: str) -> str:
    value = os.environ.get(name)
    if not value:
        msg = f"{path}: environment variable {name} is not set"
        raise ValueError(msg)
    return value


def _build_model(
    entry: str | Mapping[str, Any], path: str, defaults: Mapping[str, Any]
) -> BaseChatModel:
    """The chat model one entry describes; ``defaults`` are the stack's generation settings."""
    settings = {"model": entry} if isinstance(entry, str) else dict(entry)
    spec = settings.pop("model")
    params = {**defaults, **settings}
    # null (YAML) leaves a setting to the provider, e.g. for models that refuse temperature.
    for key in ("temperature", "max_tokens"):
        if params.get(key, 0) is None:
            del params[key]
    if spec == LOCAL_MODEL:
        params.setdefault("stream_usage", True)
        return shared_server().chat_model(**params)
    provider = spec.partition(":")[0]
    api_key_env = params.pop("api_key_env", None)
    api_key = _key_from_environment(api_key_env, f"{path}.api_key_env") if api_key_env else None
    if provider == "openai" and "base_url" in params:
        # A server of the user's own: an OPENAI_API_KEY must not travel there.
        return openai_compatible_model(
            spec.partition(":")[2],
            base_url=params.pop("base_url"),
            api_key=api_key or NO_KEY,
            max_tokens=params.pop("max_tokens", None),
            temperature=params.pop("temperature", None),
            **params,
        )
    if api_key is not None:
        params["api_key"] = api_key
    extras = set(settings) - _ENTRY_KEYS
    with warnings.catch_warnings():
        # Unknown settings are reported below, as errors naming their key.
        warnings.filterwarnings("ignore", message=".*not default parameter")
        model = resolve_model(spec, path, **params)
    passed_on = getattr(model, "model_kwargs", None) or {}
    for key in sorted(extras):
        if key in passed_on and key != "model_kwargs":
            msg = f"{path}.{key}: unknown key (not a setting of {type(model).__name__})"
            raise ValueError(msg)
    return model


def _build(config: Mapping[str, Any]) -> ChatMoA:
    moa_fields = {key: config[key] for key in _MOA_KEYS if key in config}
    if "preset" in config:
        api_key_env = config.get("api_key_env")
        return preset(
            config["preset"],
            base_url=config.get("base_url"),
            api_key=_key_from_environment(api_key_env, "api_key_env") if api_key_env else None,
            max_tokens=config.get("max_tokens", PAPER_MAX_TOKENS),
            temperature=config.get("temperature", PAPER_TEMPERATURE),
            **moa_fields,
        )
    defaults = {
        "temperature": config.get("temperature", PAPER_TEMPERATURE),
        "max_tokens": config.get("max_tokens", PAPER_MAX_TOKENS),
    }
    stack: dict[str, Any]
    if "proposers" in config:
        stack = {
            "proposers": [
                _build_model(entry, f"proposers[{index}]", defaults)
                for index, entry in enumerate(config["proposers"])
            ],
            "layers": config.get("layers", PAPER_LAYERS),
        }
    else:
        stack = {
            "layers": [
                [
                    _build_model(entry, f"layers[{number}][{index}]", defaults)
                    for index, entry in enumerate(layer)
                ]
                for number, layer in enumerate(config["layers"])
            ]
        }
    aggregator = _build_model(config["aggregator"], "aggregator", defaults)
    return ChatMoA(**stack, aggregator=aggregator, **moa_fields)


def chat_moa_from_config(path: str | Path) -> ChatMoA:
    """The MoA stack a YAML or TOML file describes.

    Keys are read from the environment variables the file names
    (``api_key_env``); no model is called. ``local-model`` entries and the
    ``local`` preset start the embedded llama.cpp server.

    Every model's ``temperature`` and ``max_tokens`` default to the reference
    code's 0.7 and 2048; a stack's top-level ``temperature``/``max_tokens``
    change that default for its models, a model's own settings override it.

    Args:
        path: A ``.yaml``, ``.yml`` or ``.toml`` file; see ``load_config``.

    Raises:
        FileNotFoundError: There is no such file.
        ValueError: The file is invalid, a named environment variable is not
            set, or a model cannot be created; the message names the file
            and the key path.
    """
    config = load_config(path)
    source = str(path)
    try:
        return _build(config)
    except ValueError as error:
        message = str(error)
        if message.startswith(f"{source}:"):
            raise
        msg = f"{source}: {message}"
        raise ValueError(msg) from error
