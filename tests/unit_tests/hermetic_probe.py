"""Run by ``test_hermetic.py`` as a plain ``pytest`` run of its own: not collected otherwise."""

import os
import socket
import subprocess
import sys

import pytest
from pytest_socket import SocketBlockedError

from tests.conftest import LEAKS


def test_no_socket_but_unix() -> None:
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()


def test_no_tracing_variable_or_key_here_or_in_a_child() -> None:
    assert [name for name in os.environ if LEAKS.search(name)] == []
    child = subprocess.run(
        [sys.executable, "-c", "import os; print('\\n'.join(sorted(os.environ)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [name for name in child.stdout.split() if LEAKS.search(name)] == []
