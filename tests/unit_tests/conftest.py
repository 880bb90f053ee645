"""Unit tests have no network: pytest's own configuration says so, however pytest is run.

Every test below this folder gets pytest-socket's ``disable_socket`` mark: a
socket other than a Unix one (asyncio's event loops use those) is an error; a test
marked ``allow_hosts(["127.0.0.1"])`` may reach that host, and no other.
Integration tests, which talk to servers of their own on 127.0.0.1, are not marked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every unit test ``disable_socket``, but those that name the hosts they may reach.

    A test marked ``allow_hosts(["127.0.0.1"])`` (a download from a local server)
    keeps that: pytest-socket lets such a test reach those hosts alone.
    """
    for item in items:
        named = item.get_closest_marker("allow_hosts")
        if HERE in item.path.parents and not named:
            item.add_marker(pytest.mark.disable_socket)
