"""``kill -9`` while a durable ChatMoA's aggregator answers, then resume, on real databases.

A worker process (`durable_worker`) runs an outer LangGraph graph whose node calls a
durable ``ChatMoA`` over the scripted OpenAI-compatible server, which runs in this
process and keeps every request it gets. The server answers the proposers and holds
the aggregator's request; once it holds it (the call is in flight), the MoA run's
state is read from the database as it saved it (waiting before its aggregator, the
three references in it), and the worker is killed with SIGKILL. A new worker resumes
the thread. Then the server's own log must show each proposer called once and the
aggregator twice; the answer must carry every call's record; and the thread must
hold the question and one answer.

On SQLite (a file) and on a real PostgreSQL server (`postgres`), sync and async.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, messages_from_dict

from langchain_moa.graph.human_review import pending_review
from tests.integration_tests import durable_worker
from tests.integration_tests.durable_worker import AGGREGATOR, PROPOSERS, QUESTION
from tests.integration_tests.scripted_openai import ScriptedOpenAI

ROOT = Path(__file__).parents[2]
WAIT_S = 60.0
"""The longest a worker may take to reach the aggregator's call (imports included)."""


def _worker(database: str, base_url: str, thread: str, out: Path, *, is_async: bool) -> list[str]:
    command = [sys.executable, "-m", "tests.integration_tests.durable_worker"]
    return [*command, database, base_url, thread, str(out), *(["--async"] if is_async else [])]


def _is_aggregator(request: dict) -> bool:
    return request.get("model") == AGGREGATOR


def _wait_for_held(server: ScriptedOpenAI, worker: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not server.held:
        if worker.poll() is not None:
            pytest.fail(f"the worker exited ({worker.returncode}):\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no aggregator call in {WAIT_S}s:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


def _saved_review(database: str, base_url: str, thread: str) -> dict[str, str]:
    """The references of the MoA run as the database holds it, once saved before the aggregator.

    LangGraph writes a step's checkpoint while the next step runs (durability
    "async", its default): waited for here, so the kill lands after it.
    """
    config = {"configurable": {"thread_id": thread}}
    moa = durable_worker.stack(base_url)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with durable_worker.saver(database) as checkpointer:
            outer = durable_worker.outer_graph(moa, checkpointer)
            review = pending_review(outer, config, moa=moa.graph)
        if review is not None:
            return review.references
        time.sleep(0.05)
    pytest.fail("the MoA run's step before the aggregator was never saved")


@pytest.mark.parametrize(
    ("kind", "is_async"),
    [("sqlite", False), ("postgres", False), ("postgres", True)],
    ids=["sqlite", "postgres", "postgres-async"],
)
def test_killed_during_the_aggregator_resumes_without_calling_proposers_again(
    kind: str,
    is_async: bool,  # noqa: FBT001 - a parameter of the test
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if kind == "sqlite":
        database = f"sqlite:{tmp_path / 'threads.sqlite'}"
    else:
        database = request.getfixturevalue("postgres").url
    thread, out, log = uuid.uuid4().hex, tmp_path / "messages.json", tmp_path / "worker.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with ScriptedOpenAI() as server:
        server.hold_after(0, where=_is_aggregator)
        command = _worker(database, server.base_url, thread, out, is_async=is_async)
        with log.open("wb") as output:
            worker = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            _wait_for_held(server, worker, log)
            references = _saved_review(database, server.base_url, thread)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        assert worker.returncode == -signal.SIGKILL
        assert list(references) == [f"layer1/{name}" for name in PROPOSERS]
        assert not out.exists()
        server.release()

        resumed = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert resumed.returncode == 0, resumed.stderr[-4000:]

    models = Counter(r["model"] for r in server.requests)
    assert models == {**dict.fromkeys(PROPOSERS, 1), AGGREGATOR: 2}
    # The resumed aggregator read the references the killed run's proposers wrote.
    last = server.requests[-1]
    assert _is_aggregator(last)
    assert all(text in last["messages"][0]["content"] for text in references.values())

    messages = messages_from_dict(json.loads(out.read_text()))
    assert [m.type for m in messages] == ["human", "ai"]
    answer = messages[-1]
    assert isinstance(answer, AIMessage)
    assert answer.content == f"A scripted answer to: {QUESTION}"
    metadata = answer.response_metadata
    calls = [call for layer in metadata["layers"] for call in layer]
    assert [c["node"] for c in calls] == [*references, "aggregator"]
    assert [c["error"] for c in calls] == [None] * 4
    assert [c["text"] for c in calls[:3]] == list(references.values())
    # The proposers' records come from the killed run: not paid again, still counted.
    assert metadata["resumed_calls"] == len(PROPOSERS)
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["total_tokens"] == sum(c["usage"]["total_tokens"] for c in calls)

    with durable_worker.saver(database) as checkpointer:
        moa = durable_worker.stack(server.base_url)
        outer = durable_worker.outer_graph(moa, checkpointer)
        state = outer.get_state({"configurable": {"thread_id": thread}})
    assert state.next == ()
    assert [m.type for m in state.values["messages"]] == ["human", "ai"]
    assert state.values["messages"][-1].content == answer.content
