"""Command-line flags made of the stack spec's fields: a new field needs no CLI code.

`add_field_flag` reads a ``StackSpec`` field and adds its flag: the name from the
field's (``timeout_s`` -> ``--timeout-s``), choices from a ``Literal``, a number's
type, a switch for a bool, a repeated flag for a list of models, and the help from
the field's docstring, default included. The stack spec then checks the values, as
it checks a file's.
"""

from __future__ import annotations

import argparse
import json
import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo

from langchain_moa.stacks import STRATEGIES, StackSpec, Strategy

FLAG_NAMES = {"fallbacks": "--fallback"}
"""Flags not named as their field: a list's flag names one item, given again for each."""


def _strategy(text: str) -> Any:
    """A strategy's name, or its table of options as JSON."""
    if not text.lstrip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        msg = f"not a JSON table: {error}"
        raise argparse.ArgumentTypeError(msg) from None


def _bare(annotation: Any) -> Any:
    """The annotation without ``Annotated`` and ``| None``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in {Union, types.UnionType}:
            kept = [a for a in get_args(annotation) if a is not type(None)]
            if len(kept) != 1:
                return tuple(_bare(a) for a in kept)  # StrictFloat | StrictInt
            annotation = kept[0]
        else:
            return annotation


def help_of(field: FieldInfo) -> str:
    """The docstring's first sentence, as plain text, and the default if there is one."""
    text = " ".join((field.description or "").split()).replace("``", "")
    first = re.split(r"(?<=[.;])\s", text, maxsplit=1)[0].rstrip(".;")
    default = field.default
    if default not in (None, False) and isinstance(default, str | int | float):
        first += f" (default {default})"
    return first


def field_options(name: str) -> tuple[str, dict[str, Any]]:
    """The flag for the field ``name`` and its ``add_argument`` keywords."""
    field = StackSpec.model_fields[name]
    flag = FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
    options: dict[str, Any] = {"dest": name, "help": help_of(field)}
    bare = _bare(field.annotation)
    if get_origin(bare) is Literal:
        options["choices"] = get_args(bare)
    elif bare is bool:
        options.update(action="store_true", default=None)
    elif isinstance(bare, type) and issubclass(bare, Strategy):
        options.update(type=_strategy, metavar="NAME|JSON")
        options["help"] += (
            f": {', '.join(STRATEGIES)}, or a table with options: "
            '\'{"name": "self-moa-seq", "window": 2}\''
        )
    elif get_origin(bare) is list:
        options.update(action="append", metavar="PROVIDER:MODEL")
    elif bare == (float, int) or bare is float:
        options["type"] = float
    elif bare is int:
        options["type"] = int
    else:
        msg = f"no flag can be made of the stack field {name!r} ({field.annotation})"
        raise TypeError(msg)
    return flag, options


def add_field_flag(group: Any, name: str) -> None:
    """Add the flag of the stack field ``name`` to ``group`` (a parser or argument group)."""
    flag, options = field_options(name)
    group.add_argument(flag, **options)
