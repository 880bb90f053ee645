"""Staircase streaming on the real SmolLM2-135M-Instruct, served by llama.cpp on 127.0.0.1.

One server answers one request at a time: the steps queue behind the proposals
that are still streaming, so this checks the plumbing against a real
OpenAI-compatible stream (closing it at ``step_tokens``, records, streaming),
not the time saved (``benchmarks/staircase.py`` measures that, one server per model).
"""

import asyncio

import pytest
from langchain_core.messages import HumanMessage

from langchain_moa import ChatMoA, get_calls
from langchain_moa.stacks.strategy import Staircase

MAX_TOKENS = 24
QUESTION = "Name three colours of the rainbow, one sentence each."


@pytest.fixture(scope="module")
def moa(server):
    return ChatMoA.local(
        server=server,
        max_tokens=MAX_TOKENS,
        proposers=2,
        strategy=Staircase(step_tokens=4, max_partial_steps=2),
    )


def _check(answer) -> None:
    calls = get_calls(answer)
    proposers = [c for c in calls if c["layer"] == 1]
    steps = [c for c in calls if c["layer"] == 2]
    assert [c["node"] for c in proposers] == [
        "layer1/smollm2-135m-instruct-1",
        "layer1/smollm2-135m-instruct-2",
    ]
    assert all(c["error"] is None and c["text"].strip() for c in proposers)
    # Streamed proposals: each has its time to first token.
    assert all(c["ttft_s"] is not None for c in proposers)
    # Steps in order; the last is the aggregator's own unless a step ended the answer.
    names = [c["node"] for c in steps]
    numbered = [f"aggregator/step-{n}" for n in range(1, len(steps) + 1)]
    assert names in (numbered, [*numbered[:-1], "aggregator"])
    # A step that only repeated the answer so far is a failed step (bad_response), no other.
    assert {c["reason"] for c in steps if c["error"]} <= {"bad_response"}
    assert any(c["error"] is None for c in steps)
    # What the steps added is the answer, in order.
    assert "".join(c["text"] or "" for c in steps) == answer.text
    assert answer.response_metadata["strategy"] == "staircase"


def test_a_streamed_answer_in_steps(moa) -> None:
    chunks = list(moa.stream([HumanMessage(QUESTION)]))
    answer = sum(chunks[1:], chunks[0])
    assert answer.text.strip()
    assert "".join(c.text for c in chunks) == answer.text
    # Several chunks: the steps' own tokens, not one finished text.
    assert sum(bool(c.text) for c in chunks) > 3
    _check(answer)
    assert answer.response_metadata["accounting"]["total"]["ttft_s"] is not None


def test_an_async_answer_in_steps(moa) -> None:
    answer = asyncio.run(moa.ainvoke([HumanMessage(QUESTION)]))
    assert answer.text.strip()
    _check(answer)
