"""A plain ``pytest tests/unit_tests`` run is hermetic: no network, no tracing, no keys.

The guard is pytest's own configuration (``tests/conftest.py``,
``tests/unit_tests/conftest.py``, ``pyproject.toml``), not a flag of ``make unit``:
checked by a ``pytest`` run with no flags at all, started with a developer's
tracing variables and keys in its environment.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_socket import SocketBlockedError

from tests.conftest import LEAKS

ROOT = Path(__file__).parents[2]
PROBE = Path(__file__).with_name("hermetic_probe.py")
SHELL = {
    "LANGSMITH_TRACING": "true",
    "LANGSMITH_API_KEY": "lsv2_pt_not-a-real-key",
    "LANGCHAIN_TRACING_V2": "true",
    "OPENAI_API_KEY": "sk-not-a-real-key",
    "TOGETHER_API_KEY": "not-a-real-key",
    "HF_TOKEN": "hf_not-a-real-token",
}


def test_this_run_has_no_network() -> None:
    with pytest.raises(SocketBlockedError):
        socket.create_connection(("192.0.2.1", 80), timeout=1)


def test_a_plain_pytest_run_has_no_network_tracing_or_keys() -> None:
    env = {**os.environ, **SHELL}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PROBE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout


@pytest.mark.parametrize("name", [*SHELL, "ANTHROPIC_API_KEY", "AWS_SECRET_ACCESS_KEY"])
def test_what_counts_as_a_leak(name: str) -> None:
    assert LEAKS.search(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "MOA_STUDIO_MAX_TOKENS", "PIP_INDEX_URL"])
def test_what_does_not(name: str) -> None:
    assert not LEAKS.search(name)
