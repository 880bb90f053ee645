import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_moa import LlamaServer
from tests.integration_tests.postgres import Postgres, running_postgres

MARK = "MOA_TEST_MARK"


def marked_env() -> tuple[dict[str, str], str]:
    """An environment for a subprocess whose servers can be told from any other's."""
    mark = uuid.uuid4().hex
    return {**os.environ, MARK: mark}, mark


def llama_server_pids(serving: str = "", mark: str = "") -> set[int]:
    """Running llama-cpp-python servers: serving a path containing ``serving``,
    started under ``marked_env``'s ``mark`` (other sessions may run servers too)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split(") ", 1)[1][0]
            environ = (proc / "environ").read_bytes().split(b"\0") if mark else []
        except OSError:
            continue
        if (
            (b"llama_cpp.server" in cmdline or b"langchain_moa.local.child" in cmdline)
            and serving.encode() in b" ".join(cmdline)
            and (not mark or f"{MARK}={mark}".encode() in environ)
            and state != "Z"
        ):
            pids.add(int(proc.name))
    return pids


@pytest.fixture(scope="session")
def server():
    with LlamaServer() as running:
        yield running


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL of the session's own (test_durable, the docs' durable example)."""
    with running_postgres() as running:
        yield running
