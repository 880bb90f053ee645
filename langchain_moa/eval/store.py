"""Resumable evaluation runs: each finished item is appended to a JSONL file.

A rerun skips the items already in the file, so a killed run loses at most the
items that were in flight. Items run concurrently, up to a bound.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from langchain_moa.accounting import describe_error
from langchain_moa.eval.extras import require


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


def progress_bar(
    name: str, total: int, *, file: TextIO | None = None, disable: bool | None = None
) -> Any:
    """A tqdm bar for ``total`` items: done, rate, ETA and ``failed`` so far.

    Args:
        name: The bar's label.
        total: Items to run.
        file: Where to draw it (default stderr).
        disable: None: drawn only on a terminal, so logs and pipes get no bar; True or
            False to decide.

    Raises:
        MissingExtraError: tqdm is not installed.
    """
    require("tqdm", purpose="progress bars")
    from tqdm import tqdm  # type: ignore[import-untyped]  # noqa: PLC0415 - the eval extra

    bar = tqdm(
        total=total, desc=name, unit="item", file=file, disable=disable, dynamic_ncols=True,
        # A bar inside the ablation grid's bar is cleared when done; a top-level one stays.
        leave=None,
    )  # fmt: skip
    bar.set_postfix(failed=0, refresh=False)
    return bar


class ItemsFailedError(RuntimeError):
    """Some items failed; the others were saved, and a rerun retries these."""


async def run_items(
    items: Sequence[dict[str, Any]],
    work: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    store: JsonlStore,
    *,
    concurrency: int = 4,
    name: str = "items",
    progress_file: TextIO | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Run ``work`` on every item not yet in ``store``, saving each result.

    Args:
        items: Each has ``store.key``.
        work: Turns an item into its record (which must keep the key).
        store: Where finished records go.
        concurrency: Items in flight at once.
        name: The progress bar's label.
        progress_file: Where the progress bar is drawn (default stderr).
        progress: None: a bar only when ``progress_file`` is a terminal; True or False to
            decide.

    Returns:
        Every record in the store for these items, in item order.

    Raises:
        ItemsFailedError: naming each failed item; the rest are saved.
    """
    finished = store.done()
    todo = [item for item in items if str(item[store.key]) not in finished]
    bar = progress_bar(
        name, len(todo), file=progress_file, disable=None if progress is None else not progress
    )
    gate = asyncio.Semaphore(concurrency)
    failures: list[str] = []

    async def one(item: dict[str, Any]) -> None:
        async with gate:
            try:
                record = await work(item)
            except Exception as error:  # noqa: BLE001 - collected and raised below
                failures.append(f"{item[store.key]}: {describe_error(error)}")
                bar.set_postfix(failed=len(failures), refresh=False)
                bar.update()
                return
        store.append(record)
        bar.update()

    try:
        await asyncio.gather(*(one(item) for item in todo))
    finally:
        bar.close()
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
