"""What every ``moa`` command shares: how it fails, and reading its flags."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn


def fail(message: str) -> NoReturn:
    """Exit 2 with ``message``, as argparse says a usage error."""
    print(f"moa: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def positive(text: str) -> int:
    """A whole number of at least 1, for argparse."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        msg = f"expected a whole number of at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def given(value: Any, default: Any) -> Any:
    """``value``, or ``default`` when the flag was not given."""
    # "or" would turn a given 0 into the default instead of an error.
    return default if value is None else value


def set_fields(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The flags among ``names`` that were given, as stack fields."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}
