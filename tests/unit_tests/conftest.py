"""Unit tests have no network: pytest's own configuration says so, however pytest is run.

Every test below this folder gets pytest-socket's ``disable_socket`` mark: a
socket other than a Unix one (asyncio's event loops use those) is an error.
Integration tests, which talk to servers of their own on 127.0.0.1, are not marked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every unit test ``disable_socket``."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.disable_socket)
