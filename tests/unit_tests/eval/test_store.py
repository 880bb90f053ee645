import asyncio
import io
import json

import pytest

from langchain_moa.eval.store import ItemsFailedError, JsonlStore, run_items

ITEMS = [{"id": i, "x": i} for i in range(10)]


class Killed(BaseException):
    """Not an Exception: like a run killed mid-way."""


async def _square(item):
    await asyncio.sleep(0.001 * (10 - item["id"]))  # finish out of order
    return {"id": item["id"], "y": item["x"] ** 2}


async def test_records_come_back_in_item_order(tmp_path) -> None:
    store = JsonlStore(tmp_path / "out.jsonl", "id")
    records = await run_items(ITEMS, _square, store, concurrency=5)
    assert [r["y"] for r in records] == [i * i for i in range(10)]


async def test_resume_after_interruption_gives_the_same_records(tmp_path) -> None:
    whole = JsonlStore(tmp_path / "whole.jsonl", "id")
    expected = await run_items(ITEMS, _square, whole, concurrency=3)

    calls = []

    async def crash_after_four(item):
        if len(calls) >= 4:
            raise Killed
        calls.append(item["id"])
        return await _square(item)

    resumed = JsonlStore(tmp_path / "resumed.jsonl", "id")
    with pytest.raises(Killed):
        await run_items(ITEMS, crash_after_four, resumed, concurrency=1)
    assert len(resumed.records()) == 4
    # A crash mid-write leaves a torn last line; it is ignored and redone.
    with resumed.path.open("a") as out:
        out.write('{"id": 4, "y"')
    redone = []

    async def counting(item):
        redone.append(item["id"])
        return await _square(item)

    records = await run_items(ITEMS, counting, resumed, concurrency=3)
    assert sorted(redone) == list(range(4, 10))
    assert records == expected
    assert sorted(json.loads(x)["id"] for x in resumed.path.read_text().splitlines()[:4]) == [
        0, 1, 2, 3
    ]  # fmt: skip


async def test_failed_items_are_named_and_retried_on_rerun(tmp_path) -> None:
    store = JsonlStore(tmp_path / "out.jsonl", "id")
    broken = {3, 7}

    async def flaky(item):
        if item["id"] in broken:
            msg = f"judge timed out on {item['id']}"
            raise TimeoutError(msg)
        return await _square(item)

    with pytest.raises(ItemsFailedError, match="2 of 10 items failed") as caught:
        await run_items(ITEMS, flaky, store)
    assert "3: TimeoutError: judge timed out on 3" in str(caught.value)
    assert len(store.records()) == 8
    broken.clear()
    assert len(await run_items(ITEMS, flaky, store)) == 10


async def test_no_progress_bar_off_a_terminal(tmp_path, capsys) -> None:
    log = io.StringIO()  # not a terminal, like a log file or a pipe
    await run_items(ITEMS, _square, JsonlStore(tmp_path / "a.jsonl", "id"), progress_file=log)
    await run_items(ITEMS[:3], _square, JsonlStore(tmp_path / "b.jsonl", "id"))
    assert log.getvalue() == ""
    assert capsys.readouterr().err == ""  # stderr, captured here, is no terminal either


async def test_the_progress_bar_counts_items_and_failures(tmp_path) -> None:
    log = io.StringIO()

    async def flaky(item):
        if item["id"] in {3, 7}:
            raise TimeoutError
        return await _square(item)

    with pytest.raises(ItemsFailedError, match="2 of 10 alpaca failed"):
        await run_items(
            ITEMS, flaky, JsonlStore(tmp_path / "out.jsonl", "id"),
            name="alpaca", progress_file=log, progress=True,
        )  # fmt: skip
    final = log.getvalue().split("\r")[-1]
    assert final.startswith("alpaca: 100%")
    assert "10/10" in final
    assert "failed=2" in final
    assert "item/s" in final
