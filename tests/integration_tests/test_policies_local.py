"""Policies on the real embedded model: cancellation, timeouts, a context budget.

The embedded llama.cpp server generates one request at a time, so these
also show that a cancelled or abandoned query does not stop it serving the
next one.
"""

import asyncio
import time

import pytest

from langchain_moa import ChatMoA, LayerFailedError, get_calls

SHORT = 8
LONG = 400  # long enough that a query is still generating when it is cancelled
MEDIUM = 64
QUESTION = "Name a colour."
BUDGET = 200


@pytest.fixture(scope="module")
def short(server):
    return ChatMoA.local(server=server, max_tokens=SHORT)


@pytest.fixture(scope="module")
def long(server):
    return ChatMoA.local(server=server, max_tokens=LONG, temperature=1.0)


@pytest.fixture(scope="module")
def medium(server):
    # Proposers quick enough to reach the aggregator, which is stopped mid-answer.
    return ChatMoA.local(server=server, max_tokens=MEDIUM, temperature=1.0)


def _leaked(before: set) -> set:
    return asyncio.all_tasks() - before - {asyncio.current_task()}


@pytest.mark.parametrize("how", ["ainvoke", "astream"])
def test_a_cancelled_async_query_leaks_no_task_and_the_next_one_answers(
    short, long, medium, how
) -> None:
    async def main() -> tuple[set, str]:
        before = asyncio.all_tasks()
        if how == "ainvoke":
            query = asyncio.ensure_future(long.ainvoke("Write a long story about a lake."))
            await asyncio.sleep(1.5)
            query.cancel()
            with pytest.raises(asyncio.CancelledError):
                await query
        else:
            stream = medium.astream("Write a long story about a lake.")
            async for chunk in stream:
                if chunk.content:
                    break  # the caller stops reading mid-answer
            await stream.aclose()
        await asyncio.sleep(0.1)
        leaked = _leaked(before)
        answer = await asyncio.wait_for(short.ainvoke(QUESTION), timeout=120)
        return leaked, answer.text

    leaked, text = asyncio.run(main())
    assert leaked == set()
    assert text.strip()


def test_a_closed_sync_stream_does_not_stop_the_next_query(short, medium) -> None:
    stream = medium.stream("Write a long story about a lake.")
    for chunk in stream:
        if chunk.content:
            break
    stream.close()
    assert short.invoke(QUESTION).text.strip()


def test_timeout_s_on_the_embedded_stack_is_a_clear_error(server) -> None:
    # The proposers must write LONG tokens in 0.3 s: they cannot, and are cancelled.
    moa = ChatMoA.local(server=server, max_tokens=LONG, layers=2, timeout_s=0.3)
    t0 = time.perf_counter()
    with pytest.raises(LayerFailedError, match="layer 1: 0 of 3 proposers succeeded") as caught:
        asyncio.run(moa.ainvoke("Write a long story about a lake."))
    assert time.perf_counter() - t0 < 10
    assert str(caught.value).count(": timeout: CallTimeoutError") == 3


def test_a_small_context_budget_shortens_the_references(server) -> None:
    # The paper's prompt is ~110 tokens; three 48-token references do not fit in 200.
    moa = ChatMoA.local(server=server, max_tokens=48, max_input_tokens=BUDGET)
    answer = moa.invoke("Describe a lake in two sentences.")
    aggregator = get_calls(answer)[-1]
    assert aggregator["note"] is not None
    assert aggregator["note"].startswith("references shortened to")
    # The served model counted the shortened prompt within the budget (and its
    # chat template's few tokens).
    assert aggregator["usage"]["input_tokens"] <= BUDGET + 24
    assert answer.response_metadata["degraded"] is True
