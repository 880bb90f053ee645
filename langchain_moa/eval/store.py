"""Resumable evaluation runs: each finished item is appended to a JSONL file.

A rerun skips the items already in the file, so a killed run loses at most the
items that were in flight. Items run concurrently, up to a bound.

Crash safety, for a run killed at any moment (``kill -9``, a power cut):

* A record counts once its line, newline included, is in the file. Each append is
  flushed and ``os.fsync``-ed before the item counts as done, so a record the run went on
  from survives a power cut too, not only a killed process.
* A kill mid-append leaves a torn last line (no newline). `JsonlStore.repair`, run when a
  run opens the store, cuts it away, so the file holds only complete records and the next
  append starts on a line of its own; the torn item is simply run again.
* Files derived from the records (summaries, ``model_outputs.json``, tables, charts) are
  written whole or not at all by `write_atomic`: a temporary file beside the target,
  fsync-ed, then ``os.replace``-d over it. A rerun rewrites them from the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from langchain_moa.accounting import describe_error
from langchain_moa.eval.extras import require


def _fsync_folder(folder: Path) -> None:
    """Make a new or renamed entry in ``folder`` durable (POSIX; a no-op elsewhere)."""
    if os.name != "posix":  # pragma: no cover - Windows cannot open a folder
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``path`` whole or not at all: a crash leaves the old file or the new one.

    The data goes to a temporary file in the same folder (so that the rename stays on one
    file system), is fsync-ed, then replaces ``path`` in one ``os.replace``; the folder is
    fsync-ed so the rename itself survives a power cut. The folder is created.

    Returns:
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open's mode, like open()'s, is subject to the umask: the file gets the
        # permissions a plain write would give it (mkstemp's would be 0600).
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(path)
    except BaseException:
        # Stopped by an exception (a signal leaves no chance): leave no temporary file.
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_folder(path.parent)
    return path


def _is_record(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return False
    return True


class JsonlStore:
    """An append-only JSONL file of finished records, keyed by one field.

    Only complete lines are records: a line counts once its newline is written, which is
    the last byte an append writes (see the module's note on crash safety).
    """

    def __init__(self, path: Path, key: str) -> None:
        """Open (or prepare) the store at ``path``; records are keyed by ``key``."""
        self.path = path
        self.key = key
        self._lock = threading.Lock()

    def records(self) -> list[dict[str, Any]]:
        """Every complete record, in file order.

        Read only: a torn last line (or any line that is not JSON) is skipped here, and
        removed from the file by `repair`, which a run calls when it opens the store.
        """
        if not self.path.is_file():
            return []
        lines = self.path.read_bytes().split(b"\n")[:-1]  # the last piece has no newline
        return [json.loads(line) for line in lines if _is_record(line)]

    def done(self) -> set[str]:
        """Keys of the finished records."""
        return {str(record[self.key]) for record in self.records()}

    def repair(self) -> None:
        """Leave only complete records in the file: what a crash tore is removed.

        A kill mid-append leaves the last line without its newline: the file is cut back to
        the end of the last complete line, in place. A line that is no record anywhere else
        (a file written by an older version, which only started a new line after a torn
        one) makes the file be rewritten without it, atomically (`write_atomic`). Either
        way the item is simply run again. Called by `run_items` when a run opens the store,
        and by `append` when the file does not end a line; a sound file is left as it is.
        """
        with self._lock:
            self._repair()

    def _repair(self) -> None:
        if not self.path.is_file():
            return
        raw = self.path.read_bytes()
        *lines, torn = raw.split(b"\n")
        kept = [line for line in lines if _is_record(line)]
        if len(kept) < len(lines):
            write_atomic(self.path, b"".join(line + b"\n" for line in kept))
        elif torn:
            with self.path.open("r+b") as out:
                out.truncate(len(raw) - len(torn))
                os.fsync(out.fileno())

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and make it durable (flushed and fsync-ed) before returning."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            if self._ends_mid_line():
                self._repair()  # never glue a record onto a line a crash tore
            created = not self.path.exists()
            if created:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())
            if created:
                _fsync_folder(self.path.parent)  # the new file's name survives a power cut

    def _ends_mid_line(self) -> bool:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as data:
            data.seek(-1, os.SEEK_END)
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
    # Opening a run on an existing file is a resume: first remove what a crash tore.
    store.repair()
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
