import asyncio
import io
import json
import os
import stat

import pytest

from langchain_moa.eval.store import ItemsFailedError, JsonlStore, run_items, write_atomic

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


def _lines(path):
    return path.read_bytes().split(b"\n")


def test_repair_cuts_a_torn_last_line_away(tmp_path) -> None:
    store = JsonlStore(tmp_path / "out.jsonl", "id")
    store.append({"id": 0, "y": 0})
    store.append({"id": 1, "y": 1})
    sound = store.path.read_bytes()
    with store.path.open("ab") as out:
        out.write(b'{"id": 2, "y"')  # killed mid-append
    assert [r["id"] for r in store.records()] == [0, 1]  # reading skips it ...
    assert store.path.read_bytes().endswith(b'"y"')  # ... and leaves the file alone
    store.repair()
    assert store.path.read_bytes() == sound  # cut back to the last complete line
    store.repair()  # a sound file is left as it is
    assert store.path.read_bytes() == sound


def test_a_complete_record_without_its_newline_is_not_a_record(tmp_path) -> None:
    # Killed between a record's last brace and its newline: it counts as not done (the
    # newline is the last byte an append writes), and is run again.
    store = JsonlStore(tmp_path / "out.jsonl", "id")
    store.path.write_text('{"id": 0}\n{"id": 1}', encoding="utf-8")
    assert store.done() == {"0"}
    store.repair()
    assert store.path.read_text(encoding="utf-8") == '{"id": 0}\n'


def test_append_after_a_crash_starts_a_line_of_its_own(tmp_path) -> None:
    store = JsonlStore(tmp_path / "out.jsonl", "id")
    store.path.write_text('{"id": 0}\n{"id": 1, "y', encoding="utf-8")
    store.append({"id": 1, "y": 1})
    assert store.path.read_text(encoding="utf-8") == '{"id": 0}\n{"id": 1, "y": 1}\n'


def test_repair_drops_a_broken_line_inside_the_file(tmp_path) -> None:
    # Older versions started a new line after a torn one, leaving it inside the file.
    store = JsonlStore(tmp_path / "out.jsonl", "id")
    store.path.write_text('{"id": 0}\n{"id": 1, "y\n{"id": 2}\n\n', encoding="utf-8")
    store.repair()
    assert store.path.read_text(encoding="utf-8") == '{"id": 0}\n{"id": 2}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary file left


async def test_a_run_repairs_its_store_before_resuming(tmp_path) -> None:
    store = JsonlStore(tmp_path / "out.jsonl", "id")
    store.path.write_text('{"id": 0, "y": 0}\n{"id": 1, "y"', encoding="utf-8")
    records = await run_items(ITEMS[:3], _square, store, concurrency=1)
    assert records == [{"id": i, "y": i * i} for i in range(3)]
    lines = store.path.read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == [0, 1, 2]  # none lost or twice


def test_each_append_is_flushed_then_fsynced(tmp_path, monkeypatch) -> None:
    store = JsonlStore(tmp_path / "out.jsonl", "id")
    synced = []
    real_fsync = os.fsync

    def fsync(descriptor):
        # What is on disk when fsync is called: the record must already be flushed to it.
        synced.append(store.path.read_text(encoding="utf-8") if store.path.exists() else None)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    store.append({"id": 0})
    store.append({"id": 1})
    # The first append also syncs the folder, so that the new file's name is durable.
    assert synced == ['{"id": 0}\n', '{"id": 0}\n', '{"id": 0}\n{"id": 1}\n']


def test_write_atomic_replaces_a_file_whole(tmp_path, monkeypatch) -> None:
    target = tmp_path / "sub" / "metrics.json"
    write_atomic(target, '{"old": 1}')
    assert target.read_text(encoding="utf-8") == '{"old": 1}'
    plain = tmp_path / "plain.json"
    plain.write_text("{}", encoding="utf-8")
    # The umask's permissions, as a plain write gives (not a temporary file's 0600).
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)

    def dies(_descriptor):
        msg = "disk full"
        raise OSError(msg)

    monkeypatch.setattr(os, "fsync", dies)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, '{"new": 2}')
    assert target.read_text(encoding="utf-8") == '{"old": 1}'  # untouched
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temporary file
