"""``moa studio --stack FILE --review``: your own stack in ``langgraph dev``, driven as Studio does.

The stack file's models are the scripted OpenAI-compatible server (in this process,
real HTTP), so its request log tells which calls the dev server made. Through
``langgraph-sdk``, on one thread: a run stops before the aggregator; a reference is
edited in the thread's state; the resumed run calls only the aggregator, which reads
the edited text, and its record says which reference was edited; a second run on the
thread stops there too and, resumed untouched, records no edit.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from tests.integration_tests.conftest import marked_env
from tests.integration_tests.scripted_openai import ScriptedOpenAI
from tests.integration_tests.test_studio import OFFLINE, DevServer, free_port, running

MOA = str(Path(sys.executable).with_name("moa"))
PROPOSERS = ("proposer-a", "proposer-b")
AGGREGATOR = "aggregator"
EDITED = "The reviewer's own answer: cerulean."


@pytest.fixture
def scripted() -> Iterator[ScriptedOpenAI]:
    # Each model's own answer, so a reference's text tells who wrote it.
    with ScriptedOpenAI(answer=lambda request: f"{request['model']} answers.") as server:
        yield server


@pytest.fixture
def studio(tmp_path: Path, scripted: ScriptedOpenAI) -> Iterator[DevServer]:
    def entry(model: str) -> str:
        return f"{{model: 'openai:{model}', base_url: '{scripted.base_url}', max_retries: 0}}"

    stack = tmp_path / "my-stack.yaml"
    stack.write_text(
        f"proposers: [{', '.join(entry(m) for m in PROPOSERS)}]\n"
        f"aggregator: {entry(AGGREGATOR)}\nlayers: 2\n",
        encoding="utf-8",
    )
    env, mark = marked_env()
    # The file's models send a key, as ChatOpenAI must; the scripted server takes any.
    env |= OFFLINE | {"OPENAI_API_KEY": "unused"}
    command = [MOA, "studio", "--stack", str(stack), "--review", "--port", str(free_port()),
               "--no-browser"]  # fmt: skip
    with running(command, env, mark, tmp_path) as server:
        yield server


def _models(scripted: ScriptedOpenAI) -> Counter[str]:
    return Counter(request["model"] for request in scripted.requests)


async def _stopped_before_the_aggregator(client, thread_id: str) -> dict:
    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["aggregator"], state
    return state["values"]


async def test_moa_studio_serves_a_stack_file_and_reviews_before_the_aggregator(
    studio: DevServer, scripted: ScriptedOpenAI
) -> None:
    client = get_client(url=studio.url)
    graph = await client.assistants.get_graph("moa")
    nodes = {node["id"] for node in graph["nodes"]}
    assert {f"layer1/{m}" for m in PROPOSERS} | {"layer1/join", "aggregator"} <= nodes
    thread_id = (await client.threads.create())["thread_id"]

    question = {"messages": [{"role": "user", "content": "Name a shade of blue."}]}
    await client.runs.wait(thread_id, "moa", input=question)
    values = await _stopped_before_the_aggregator(client, thread_id)
    assert _models(scripted) == dict.fromkeys(PROPOSERS, 1)
    assert values["reference_nodes"] == [f"layer1/{m}" for m in PROPOSERS]
    original = values["references"][1]
    assert original == "proposer-b answers."

    # As Studio's state editor does: the thread's state, a field replaced.
    references = [values["references"][0], EDITED]
    await client.threads.update_state(thread_id, {"references": references})
    await client.runs.wait(thread_id, "moa", input=None)
    state = (await client.threads.get_state(thread_id))["values"]
    assert _models(scripted) == {**dict.fromkeys(PROPOSERS, 1), AGGREGATOR: 1}
    read = scripted.requests[-1]["messages"][0]["content"]
    assert EDITED in read
    assert original not in read
    assert [m["type"] for m in state["messages"]] == ["human", "ai"]
    final = state["calls"][-1]
    assert final["node"] == "aggregator"
    assert final["error"] is None
    assert final["edited_references"] == [{"node": "layer1/proposer-b", "edit": "edited"}]

    # The thread's second run: its own calls, stopped again, resumed as it is.
    again = {"messages": [{"role": "user", "content": "And a shade of green?"}]}
    await client.runs.wait(thread_id, "moa", input=again)
    await _stopped_before_the_aggregator(client, thread_id)
    await client.runs.wait(thread_id, "moa", input=None)
    state = (await client.threads.get_state(thread_id))["values"]
    assert _models(scripted) == {**dict.fromkeys(PROPOSERS, 2), AGGREGATOR: 2}
    assert [m["type"] for m in state["messages"]] == ["human", "ai", "human", "ai"]
    assert "edited_references" not in state["calls"][-1]
    assert len({call["turn"] for call in state["calls"]}) == 2
    runs = await client.runs.list(thread_id)
    assert len(runs) == 4
    assert {run["status"] for run in runs} <= {"success", "interrupted"}

    left = await asyncio.to_thread(studio.stop)
    assert not left, studio.log_tail()
