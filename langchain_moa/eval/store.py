"""Resumable evaluation runs: each finished item is appended to a JSONL file.

A rerun skips the items already in the file, so a killed run loses at most the
items that were in flight. Items run concurrently, up to a bound.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from langchain_moa.accounting import describe_error


class JsonlStore:
    """An append-only JSONL file of finished records, keyed by one field."""

    def __init__(self, path: Path, key: str) -> None:
        """Open (or prepare) the store at ``path``; records are keyed by ``key``."""
        self.path = path
        self.key = key
        self._lock = threading.Lock()

    def records(self) -> list[dict[str, Any]]:
        """Every complete record, in file order.

        A last line cut short by a crash is ignored (and rewritten on resume).
        """
        if not self.path.is_file():
            return []
        records = []
        with self.path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def done(self) -> set[str]:
        """Keys of the finished records."""
        return {str(record[self.key]) for record in self.records()}

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and make it durable before returning."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = self._ends_mid_line()
            with self.path.open("a", encoding="utf-8") as out:
                if torn:
                    out.write("\n")  # keep a line cut short by a crash apart
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()

    def _ends_mid_line(self) -> bool:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as data:
            data.seek(-1, 2)
            return data.read(1) != b"\n"


class Progress:
    """``name: done/total, failed, elapsed, ETA`` on one line of stderr."""

    def __init__(self, name: str, total: int, stream: TextIO = sys.stderr) -> None:
        """Start counting ``total`` items."""
        self.name, self.total, self.stream = name, total, stream
        self.done = self.failed = 0
        self.started = time.monotonic()

    def update(self, *, failed: bool = False) -> None:
        """Count one finished item and redraw."""
        self.done += 1
        self.failed += failed
        last = self.done == self.total
        live = self.stream.isatty()
        # A log file gets a line per tenth of the run, a terminal one live line.
        if not (live or last or self.done % max(1, self.total // 10) == 0):
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        failures = f", {self.failed} failed" if self.failed else ""
        line = f"{self.name}: {self.done}/{self.total}{failures}, {elapsed:.0f}s, ETA {eta:.0f}s"
        self.stream.write(f"\r{line} " if live else f"{line}\n")
        if live and last:
            self.stream.write("\n")
        self.stream.flush()


class ItemsFailedError(RuntimeError):
    """Some items failed; the others were saved, and a rerun retries these."""


async def run_items(
    items: Sequence[dict[str, Any]],
    work: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    store: JsonlStore,
    *,
    concurrency: int = 4,
    name: str = "items",
) -> list[dict[str, Any]]:
    """Run ``work`` on every item not yet in ``store``, saving each result.

    Args:
        items: Each has ``store.key``.
        work: Turns an item into its record (which must keep the key).
        store: Where finished records go.
        concurrency: Items in flight at once.
        name: Shown in the progress line.

    Returns:
        Every record in the store for these items, in item order.

    Raises:
        ItemsFailedError: naming each failed item; the rest are saved.
    """
    finished = store.done()
    todo = [item for item in items if str(item[store.key]) not in finished]
    progress = Progress(name, len(todo))
    gate = asyncio.Semaphore(concurrency)
    failures: list[str] = []

    async def one(item: dict[str, Any]) -> None:
        async with gate:
            try:
                record = await work(item)
            except Exception as error:  # noqa: BLE001 - collected and raised below
                failures.append(f"{item[store.key]}: {describe_error(error)}")
                progress.update(failed=True)
                return
        store.append(record)
        progress.update()

    await asyncio.gather(*(one(item) for item in todo))
    if failures:
        msg = f"{len(failures)} of {len(todo)} {name} failed (rerun to retry): " + "; ".join(
            failures[:10]
        )
        raise ItemsFailedError(msg)
    return ordered(store.records(), items, store.key)


def ordered(
    records: Iterable[dict[str, Any]], items: Sequence[dict[str, Any]], key: str
) -> list[dict[str, Any]]:
    """The records of ``items``, in item order (later duplicates win)."""
    by_key = {str(r[key]): r for r in records}
    return [by_key[str(i[key])] for i in items if str(i[key]) in by_key]
