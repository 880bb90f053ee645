"""Stacks described in YAML or TOML files.

A file holds a ``StackSpec``'s fields. It names a preset::

    preset: moa-lite
    base_url: http://127.0.0.1:8000/v1     # optional: a server with Together's model ids
    api_key_env: VLLM_API_KEY              # optional: the variable holding its key

or describes a stack, as the paper does (``proposers`` and a layer count) or
layer by layer (``proposer_layers``), with any ChatOpenAI or
``init_chat_model`` settings per model::

    proposer_layers:
      - ["openai:gpt-4o-mini", {model: local-model, seed: 1}]
      - ["openai:gpt-4o-mini"]
    aggregator: {model: "openai:gpt-4o", temperature: 0.2}
    min_proposers: 1

Keys are never in the file: ``api_key_env`` names the environment variable
that holds one. Every model's ``temperature`` and ``max_tokens`` default to
the reference code's 0.7 and 2048. A file that names no model at all is the
embedded stack, as ``ChatMoA()`` is. Every mistake is a ``StackError`` naming
the file and the key path (``stack.yaml: proposer_layers[1][0].temprature:
unknown key (did you mean 'temperature'?)``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

from langchain_moa.stacks.errors import StackError, shown
from langchain_moa.stacks.presets import PAPER_MAX_TOKENS, PAPER_TEMPERATURE
from langchain_moa.stacks.spec import StackSpec

CONFIG_SUFFIXES = (".yaml", ".yml", ".toml")
"""File name endings ``load_config`` reads; the ending picks the format."""


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
            raise StackError(msg) from error
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        msg = f"{path}: not valid YAML: {error}"
        raise StackError(msg) from error


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a stack file (YAML or TOML, by its ending).

    Nothing is built and no key is read. Settings of providers other than
    OpenAI are checked when the model is built.

    Args:
        path: A ``.yaml``, ``.yml`` or ``.toml`` file.

    Returns:
        The file's settings, as written.

    Raises:
        FileNotFoundError: There is no such file.
        StackError: The file is not valid YAML or TOML, or a setting is
            unknown, missing or of the wrong type; the message names the file
            and the key path.
    """
    config, _ = _read(Path(path))
    return config


def load_stack(path: str | Path) -> StackSpec:
    """The stack spec a YAML or TOML file describes (see ``load_config``)."""
    _, spec = _read(Path(path))
    return spec


def _read(path: Path) -> tuple[dict[str, Any], StackSpec]:
    if path.suffix.lower() not in CONFIG_SUFFIXES:
        msg = f"{path}: unsupported config format {path.suffix!r}: use {', '.join(CONFIG_SUFFIXES)}"
        raise StackError(msg)
    if not path.exists():
        msg = f"config file not found: {path}"
        raise FileNotFoundError(msg)
    if not path.is_file():
        msg = f"{path}: not a file"
        raise StackError(msg)
    config = _parse(path)
    if not isinstance(config, dict):
        msg = f"{path}: expected a table of settings at the top, got {shown(config)}"
        raise StackError(msg)
    for key in config:
        if not isinstance(key, str):
            # Checked here: StackSpec's keyword arguments cannot carry one.
            msg = f"{path}: keys must be strings, got {shown(key)}"
            raise StackError(msg)
    settings = dict(config)
    if {"proposers", "proposer_layers"} & set(settings):
        # The reference code's settings, unless the file gives its own
        # (presets carry their own defaults).
        settings.setdefault("temperature", PAPER_TEMPERATURE)
        settings.setdefault("max_tokens", PAPER_MAX_TOKENS)
    try:
        return config, StackSpec(**settings)
    except StackError as error:
        raise error.at(path) from None
