from pathlib import Path

import pytest

from langchain_moa import LlamaServer


def llama_server_pids(serving: str = "") -> set[int]:
    """Every running llama-cpp-python server process (serving a path containing ``serving``)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if b"llama_cpp.server" in cmdline and serving.encode() in b" ".join(cmdline) and state != "Z":
            pids.add(int(proc.name))
    return pids


@pytest.fixture(scope="session")
def server():
    with LlamaServer() as running:
        yield running
