"""``langgraph dev`` serves the MoA graph offline, as LangGraph Studio uses it."""

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.integration_tests.conftest import MARK, llama_server_pids, marked_env

LANGGRAPH = str(Path(sys.executable).with_name("langgraph"))
CONFIG = Path(__file__).parents[2] / "langgraph.json"
MAX_TOKENS = 48
STARTUP_TIMEOUT_S = 300  # the first start imports langgraph-api and loads the model (2 cores)
OFFLINE = {
    # No LangSmith tracing, hence no LangSmith client and no organisation lookup.
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    # langgraph-cli posts each command to its analytics endpoint unless this is "1".
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    # langgraph-api asks PyPI for a newer version at start unless this is set.
    "LANGGRAPH_NO_VERSION_CHECK": "true",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def marked_pids(mark: str) -> set[int]:
    """Live processes whose environment carries ``mark``: the dev server and all it spawned."""
    pids = set()
    needle = f"{MARK}={mark}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            state = (proc / "stat").read_text().split(") ", 1)[1][0]
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ and state != "Z":
            pids.add(int(proc.name))
    return pids


@dataclass
class DevServer:
    """A ``langgraph dev`` session whose processes all carry ``mark``."""

    url: str
    mark: str
    process: subprocess.Popen
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"langgraph dev exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/ok", timeout=2) as response:  # noqa: S310 - our own http URL
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        pytest.fail(f"langgraph dev did not answer in {STARTUP_TIMEOUT_S}s:\n{self.log_tail()}")

    def stop(self) -> set[int]:
        """SIGTERM to ``langgraph dev`` alone, as a process manager sends it.

        Returns what is left of the session 30 s after it exits.
        """
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        deadline = time.monotonic() + 30
        while marked_pids(self.mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        return marked_pids(self.mark) | llama_server_pids(mark=self.mark)

    def kill(self) -> None:
        """Whatever is left: the process group, then any llama.cpp server."""
        if self.process.poll() is None or marked_pids(self.mark):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        for pid in llama_server_pids(mark=self.mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], mark: str, folder: Path
) -> Iterator[DevServer]:
    """``command`` (a ``langgraph dev``) run from ``folder``, until it answers; killed after."""
    log = folder / "langgraph-dev.log"
    with log.open("wb") as out:
        # Run from a scratch folder: the in-memory runtime keeps its threads in
        # ./.langgraph_api, and the reloader watches the working folder, which here
        # no one edits.
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    port = command[command.index("--port") + 1]
    server = DevServer(f"http://127.0.0.1:{port}", mark, process, log)
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.kill()


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[DevServer]:
    """The repository's langgraph.json (the embedded stack), as LangGraph Server gets it."""
    env, mark = marked_env()
    env |= OFFLINE | {"MOA_STUDIO_MAX_TOKENS": str(MAX_TOKENS)}
    command = [LANGGRAPH, "dev", "--config", str(CONFIG), "--host", "127.0.0.1",
               "--port", str(free_port()), "--no-browser"]  # fmt: skip
    with running(command, env, mark, tmp_path) as server:
        yield server


def turn_calls(calls: list[dict], turn: int) -> tuple[list[dict], list[dict]]:
    """A turn's layer-1 records (by proposer) and its aggregator records."""
    mine = [c for c in calls if c["turn"] == turn]
    layer1 = sorted((c for c in mine if c["layer"] == 1), key=lambda c: c["index"])
    return layer1, [c for c in mine if c["node"] == "aggregator"]


def check_records(records: list[dict], nodes: list[str]) -> None:
    assert [c["node"] for c in records] == nodes
    for call in records:
        assert call["error"] is None, call
        assert call["text"].strip(), call
        if call["usage"] is not None:
            # MOA_STUDIO_MAX_TOKENS reached the graph.
            assert 0 < call["usage"]["output_tokens"] <= MAX_TOKENS, call


async def proposer_nodes(client: LangGraphClient) -> list[str]:
    """The graph as Studio draws it: layer-1 proposers, a join, the aggregator."""
    graph = await client.assistants.get_graph("moa")
    node_ids = [node["id"] for node in graph["nodes"]]
    assert {"layer1/join", "aggregator"} <= set(node_ids)
    proposers = [n for n in node_ids if n.startswith("layer1/") and n != "layer1/join"]
    assert len(proposers) == 3
    # Studio builds its input form from the input schema: what a caller gives.
    (assistant,) = await client.assistants.search(graph_id="moa")
    schemas = await client.assistants.get_schemas(assistant["assistant_id"])
    given = {"messages", "tools", "tool_choice", "reuse"}
    assert set(schemas["input_schema"]["properties"]) == given
    returned = {
        *("messages", "answer", "calls", "dropped", "reused"),
        *("stopped", "ranking", "shuffle_seed"),
    }
    assert set(schemas["output_schema"]["properties"]) == returned
    assert {"messages", "calls"} <= set(schemas["state_schema"]["properties"])
    return proposers


async def first_run(client: LangGraphClient, thread_id: str, proposers: list[str]) -> int:
    """Streamed, as Studio runs it; returns the run's turn."""
    events = [
        part
        async for part in client.runs.stream(
            thread_id,
            "moa",
            input={"messages": [{"role": "user", "content": "Name a colour."}]},
            stream_mode=["updates", "custom"],
        )
    ]
    assert not [p for p in events if p.event == "error"], events
    # The nodes' stream-writer events reach the client as "custom" events.
    ended = [p.data["node"] for p in events if p.event == "custom"
             and p.data.get("event") == "moa_call_end"]  # fmt: skip
    assert sorted(ended) == sorted([*proposers, "aggregator"])

    state = (await client.threads.get_state(thread_id))["values"]
    assert [m["type"] for m in state["messages"]] == ["human", "ai"]
    assert state["messages"][-1]["content"].strip()
    assert state["answer"]["content"] == state["messages"][-1]["content"]
    assert len(state["calls"]) == 4
    turn = state["calls"][0]["turn"]
    layer1, final = turn_calls(state["calls"], turn)
    check_records(layer1, proposers)
    check_records(final, ["aggregator"])
    return turn


async def second_run(
    client: LangGraphClient, thread_id: str, proposers: list[str], first: int
) -> None:
    """Same thread: its join must use its own layer-1 calls only."""
    await client.runs.wait(
        thread_id,
        "moa",
        input={"messages": [{"role": "user", "content": "Name another colour."}]},
    )
    runs = await client.runs.list(thread_id)
    assert [r["status"] for r in runs] == ["success", "success"]

    state = (await client.threads.get_state(thread_id))["values"]
    assert [m["type"] for m in state["messages"]] == ["human", "ai", "human", "ai"]
    assert state["messages"][-1]["content"].strip()
    turns = sorted({c["turn"] for c in state["calls"]})
    assert len(turns) == 2
    assert turns[0] == first
    assert turns[1] > first
    for turn in turns:
        assert len([c for c in state["calls"] if c["turn"] == turn and c["layer"] == 1]) == 3
    layer1, final = turn_calls(state["calls"], turns[1])
    check_records(layer1, proposers)
    check_records(final, ["aggregator"])
    assert state["references"] == [c["text"] for c in layer1]


async def test_langgraph_dev_serves_the_moa_graph_offline(dev_server: DevServer) -> None:
    client = get_client(url=dev_server.url)
    proposers = await proposer_nodes(client)
    assert not llama_server_pids(mark=dev_server.mark), "loading the graph started llama.cpp"
    thread_id = (await client.threads.create())["thread_id"]
    first = await first_run(client, thread_id, proposers)
    assert llama_server_pids(mark=dev_server.mark), "the first run started no llama.cpp"
    await second_run(client, thread_id, proposers, first)

    # Nothing outlives the dev server: not its reloader's worker, not llama.cpp.
    left = await asyncio.to_thread(dev_server.stop)
    assert not left, dev_server.log_tail()
