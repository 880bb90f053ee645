"""The ``eval`` extra: modules that ``moa eval`` needs but ``moa`` itself does not.

Nothing here imports them: ``moa`` (which adds the ``eval`` subcommands) must start
without them, so each is imported where it is used, after `require`.
"""

from __future__ import annotations

import importlib

INSTALL_HINT = "pip install 'langchain-moa[eval]'"
"""What to run when a module of the extra is missing."""

_DISTRIBUTIONS = {"sklearn": "scikit-learn"}
"""Import names that differ from the name pip installs."""


class MissingExtraError(ImportError):
    """A module of the ``eval`` extra is not installed; the message says how to install it."""


def require(*modules: str, purpose: str) -> None:
    """Import ``modules`` now, or say which are missing and how to install them.

    Importing, rather than only looking the modules up, also catches a module that is
    present but broken, before any benchmark item is run.

    Args:
        modules: Import names, e.g. ``"numpy"``, ``"sklearn"``.
        purpose: What needs them, for the message (e.g. ``"moa eval alpaca"``).

    Raises:
        MissingExtraError: Naming every missing distribution and ``INSTALL_HINT``.
    """
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(_DISTRIBUTIONS.get(module, module))
    if missing:
        msg = f"{purpose} needs {', '.join(missing)} (the eval extra): {INSTALL_HINT}"
        raise MissingExtraError(msg)
