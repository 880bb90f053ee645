"""An agent's tool loop over HTTP, both fanouts: who is called, how often, and the tokens."""

from collections.abc import Iterator
from typing import get_args

import pytest

from benchmarks.fanout import behaviours, problems, run_agent, run_served_agent, serve_stacks
from langchain_moa.bench.server import ScheduledServer
from langchain_moa.stacks.spec import Fanout

pytestmark = pytest.mark.timeout(60)

LAYERS = 2
PROPOSERS = 2
TOOL_CALLS = 3
PROPOSER_CALLS = LAYERS * PROPOSERS
"""Proposer calls of one user turn."""


@pytest.fixture(scope="module")
def server() -> Iterator[ScheduledServer]:
    # In this process: a child's start-up would be most of the test's time.
    with ScheduledServer(behaviours(TOOL_CALLS, (0.01, 0.02), tokens=8)) as serving:
        yield serving


async def test_per_turn_runs_the_proposers_once_per_turn(server: ScheduledServer) -> None:
    runs = {
        fanout: await run_agent(server, fanout, layers=LAYERS, proposers=PROPOSERS, number=index)
        for index, fanout in enumerate(get_args(Fanout))
    }
    every, per_turn = runs["every_call"], runs["per_turn"]
    steps = TOOL_CALLS + 1
    assert per_turn["server_requests"] == PROPOSER_CALLS + steps
    assert (per_turn["proposer_requests"], per_turn["aggregator_requests"]) == (
        PROPOSER_CALLS,
        steps,
    )
    assert every["proposer_requests"] == steps * PROPOSER_CALLS
    assert every["aggregator_requests"] == steps
    for run in runs.values():
        assert run["model_calls"] == run["server_requests"]
        assert run["tool_calls"] == TOOL_CALLS
        # The scheduled server's text answer: its words w0, w1...
        assert run["answer"].startswith("w0 w1")
        assert run["usage_matches_calls"]
    assert per_turn["input_tokens"] < every["input_tokens"]
    assert per_turn["output_tokens"] < every["output_tokens"]
    assert per_turn["total_tokens"] < every["total_tokens"]
    shape = {"layers": LAYERS, "proposers": PROPOSERS, "tool_calls": TOOL_CALLS}
    assert problems(list(runs.values()), **shape) == []
    assert server.errors == []


async def test_per_turn_through_moa_serve_runs_the_proposers_once_per_turn(
    server: ScheduledServer,
) -> None:
    # The agent's model is ChatOpenAI over moa serve: each step is its own request.
    served = serve_stacks(server, layers=LAYERS, proposers=PROPOSERS)
    try:
        runs = {
            fanout: await run_served_agent(server, served.base_url, fanout, number=10 + index)
            for index, fanout in enumerate(get_args(Fanout))
        }
    finally:
        served.stop()
    every, per_turn = runs["every_call"], runs["per_turn"]
    steps = TOOL_CALLS + 1
    assert (per_turn["proposer_requests"], per_turn["aggregator_requests"]) == (
        PROPOSER_CALLS,
        steps,
    )
    assert every["proposer_requests"] == steps * PROPOSER_CALLS
    assert per_turn["total_tokens"] < every["total_tokens"]
    shape = {"layers": LAYERS, "proposers": PROPOSERS, "tool_calls": TOOL_CALLS}
    assert problems(list(runs.values()), **shape) == []
