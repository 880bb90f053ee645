"""How a stack's mistakes are told: `StackError`, and `describe` for pydantic's errors.

Every line of a ``StackError`` names a key path, as a file would be read
(``layers[1][0].temprature: unknown key (did you mean 'temperature'?)``);
`describe` turns a ``ValidationError`` of the stack spec into those lines.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

ENTRY_TAGS = frozenset({"instance", "config"})
"""The model-entry union's branch tags: in an error's location, not keys."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def shown(value: Any) -> str:
    """A value for an error message: scalars as written, containers by kind."""
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


class StackError(ValueError):
    """A stack spec is invalid; each line names a key path and the problem."""

    def at(self, source: str | Path) -> StackError:
        """The same error with ``source: `` (a file) in front of every line."""
        return StackError("\n".join(f"{source}: {line}" for line in str(self).splitlines()))

    def under(self, path: str) -> StackError:
        """The same error for an entry at key ``path`` (``proposers[0]``)."""
        lines = []
        for line in str(self).splitlines():
            split = _key_path(line)
            lines.append(f"{path}.{line}" if split else f"{path}: {line}")
        return StackError("\n".join(lines))


def _path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if part in ENTRY_TAGS:
            continue  # the union's branch, not a key
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _problem(error: Mapping[str, Any]) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    problems = {
        "missing": "missing",
        "extra_forbidden": "unknown key",
        "int_type": f"expected an integer, got {shown(value)}",
        "float_type": f"expected a number, got {shown(value)}",
        "string_type": f"expected a string, got {shown(value)}",
        "list_type": f"expected a list, got {shown(value)}",
        "bool_type": f"expected true or false, got {shown(value)}",
        "string_too_short": "must not be empty",
        "string_pattern_mismatch": (
            "expected the name of an environment variable (letters, digits and _) "
            "that holds the key, not the key itself"
        ),
        "literal_error": f"expected one of {ctx.get('expected', '')}, got {shown(value)}",
        "greater_than": f"must be more than {ctx.get('gt')}, got {value!r}",
        "greater_than_equal": (
            f"must not be negative, got {value!r}"
            if ctx.get("ge") == 0
            else f"must be at least {ctx.get('ge')}, got {value!r}"
        ),
    }
    if kind == "moa":
        return str(error["msg"])
    return problems.get(kind, str(error["msg"]))


def _pick(errors: list[Any]) -> list[Any]:
    # StrictFloat | StrictInt reports a failure per branch: one line says it.
    seen, kept = set(), []
    for error in errors:
        path = _path(
            error["loc"][:-1] if error["type"] in {"int_type", "float_type"} else error["loc"]
        )
        key = (path, error["type"] in {"int_type", "float_type"})
        number_union = error["loc"] and error["loc"][-1] in {"int", "float"}
        if number_union:
            if key in seen:
                continue
            seen.add(key)
            error = {**error, "loc": error["loc"][:-1], "type": "float_type"}  # noqa: PLW2901
        kept.append(error)
    return kept


def _key_path(problem: str) -> tuple[str, str] | None:
    """``(key.path, rest)`` when ``problem`` starts with a key path and ``: ``."""
    head, sep, rest = problem.partition(": ")
    if sep and " " not in head and head.split(".")[0].split("[")[0].isidentifier():
        return head, rest
    return None


def describe(error: ValidationError, source: str = "") -> StackError:
    """A ``StackError`` whose lines read ``source: key.path: problem``.

    Our own rules put the key at the front of their message; it is joined to
    the path where the rule ran. A ``StackError`` raised during validation
    (``model_validate`` runs ``StackSpec.__init__``; ``ChatMoA`` builds its
    models there) keeps its own lines instead of pydantic's "Value error, ".
    """
    lines = []
    for item in _pick(error.errors(include_url=False)):
        path = _path(item["loc"])
        nested = (item.get("ctx") or {}).get("error") if item["type"] == "value_error" else None
        if isinstance(nested, StackError):
            problems, own = str(nested).splitlines() or [""], True
        else:
            problems, own = [_problem(item)], item["type"] == "moa"
        for number, problem in enumerate(problems):
            split = _key_path(problem) if own else None
            if number and split is None:
                lines.append(problem)  # a multi-line message goes on
                continue
            where_path, text = path, problem
            if split is not None:
                head, text = split
                where_path = f"{path}.{head}" if path else head
            where = ": ".join(part for part in (source, where_path) if part)
            lines.append(f"{where}: {text}" if where else text)
    return StackError("\n".join(lines))
