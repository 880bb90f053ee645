"""``kill -9`` in the middle of every ``moa eval`` benchmark and the ablation grid, then resume.

Each benchmark of `langchain_moa.eval.registry` (and the ablation grid, whose configurations
write through the same stores) is run as ``moa eval`` subprocesses against a scripted
OpenAI-compatible server over real HTTP (`ScriptedOpenAI`): the model under evaluation,
the MoA proposers and aggregator, and the judge all answer deterministically, so an
uninterrupted run and a killed-and-resumed one must write the same files.

A kill lands where the test chooses, without timing luck: the server answers a set number
of requests and then holds the next ones, so the run cannot finish; once its records file
has a complete line and a request is held, the run is killed with SIGKILL. The kill itself
leaves no torn line (the run is waiting on HTTP), so the test then appends half a record,
as a kill mid-append would leave it. A benchmark with a judge is killed twice: while the
model answers, and again while the judge grades. The last run completes.

Then: every records file holds only complete records (the torn line is gone), one per item
(nothing lost, nothing twice), equal to the uninterrupted run's; and every other file the
run writes (``metrics.json``, AlpacaEval's ``model_outputs.json`` and ``annotations.json``,
FLASK's radar chart, the ablation tables) equals the uninterrupted run's.

Fields that legitimately differ between two runs are dropped before comparing (`VOLATILE`):
``latency_s``, ``latency_s_mean`` and a MoA call's ``started_at`` (wall-clock time);
MT-Bench's ``tstamp`` and ``answer_id`` (FastChat's format: the time of the answer or
judgement, and a random id);
and a usage's ``total_cost``, which langchain_core adds, as 0, to an answer read from the
LLM cache: a resumed run reads the calls its killed predecessor finished (an MT-Bench
question's first turn, say) from the cache, as ``moa eval`` does by default, and so paid
nothing for them.
Records are compared as sets keyed by the item: concurrent items are appended as they
finish, in whatever order that is.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from langchain_moa.eval import flask, registry
from tests.fixtures import FIXTURES
from tests.integration_tests.scripted_openai import ScriptedOpenAI

MOA = str(Path(sys.executable).with_name("moa"))
MODEL, JUDGE = "scripted", "judge"
CONCURRENCY = 2
LIMIT = 5  # every fixture item of the smallest sets
VOLATILE = frozenset(
    {"latency_s", "latency_s_mean", "started_at", "tstamp", "answer_id", "total_cost"}
)
WAIT_S = 60.0
"""The longest a run may take to reach the point where it is killed."""


def _crc(request: dict[str, Any]) -> int:
    return zlib.crc32(json.dumps(request["messages"], sort_keys=True).encode())


def _is_judge(request: dict[str, Any]) -> bool:
    return request.get("model") == JUDGE


def _is_model(request: dict[str, Any]) -> bool:
    return not _is_judge(request)


# Verdicts each judge's parser reads (so scores are not all missing), derived from the
# request so that both runs get the same one.
def _alpaca_verdict(request: dict[str, Any]) -> str:
    return "m" if _crc(request) % 2 else "M"


def _mt_bench_verdict(request: dict[str, Any]) -> str:
    return f"The answer is fine. Rating: [[{_crc(request) % 10 + 1}]]"


def _flask_verdict(request: dict[str, Any]) -> str:
    scores = {skill: (_crc(request) + i) % 5 + 1 for i, skill in enumerate(flask.SKILLS)}
    return f"Reviewed.\n{json.dumps(scores)}"


@dataclass(frozen=True)
class Phase:
    """A part of a run that writes one records file, and where the run is killed in it."""

    store: str
    """The records file, relative to the run's results folder."""
    key: str
    """The field records are keyed by."""
    hold: Callable[[dict[str, Any]], bool]
    """The requests that are counted, and held once ``answered`` have been answered."""
    answered: int
    records: int = LIMIT
    """Records the file holds when the run is done."""


@dataclass(frozen=True)
class Case:
    """One benchmark (or the grid): how it is run, killed and compared."""

    name: str
    args: tuple[str, ...]
    folder: str
    """The results folder under ``--out``."""
    phases: tuple[Phase, ...]
    """Killed once in each, in order; all records files, for the comparison."""
    files: tuple[str, ...]
    """Other files to compare, relative to ``folder``."""
    verdict: Callable[[dict[str, Any]], str] | None = None


def _args(bench: str, *extra: str) -> tuple[str, ...]:
    return (bench, "--model", f"openai:{MODEL}", "--name", "run", *extra)


JUDGED = ("--judge", f"openai:{JUDGE}")
CASES = (
    Case(
        "gsm8k",
        _args("gsm8k"),
        "run/gsm8k",
        (Phase("answers.jsonl", "id", _is_model, 2),),
        ("metrics.json",),
    ),
    Case(
        "mt-bench",
        _args("mt-bench", *JUDGED),
        "run/mt_bench",
        # Two turns per question: 3 answered calls finish one question.
        (
            Phase("model_answer.jsonl", "question_id", _is_model, 3),
            Phase("judgments.jsonl", "key", _is_judge, 3, records=2 * LIMIT),
        ),
        ("metrics.json",),
        _mt_bench_verdict,
    ),
    Case(
        "flask",
        _args("flask", *JUDGED),
        "run/flask",
        (
            Phase("answers.jsonl", "idx", _is_model, 2),
            Phase("reviews.jsonl", "idx", _is_judge, 2),
        ),
        ("metrics.json", "flask_radar.png"),
        _flask_verdict,
    ),
    Case(
        "alpaca",
        _args("alpaca", *JUDGED),
        "run/alpaca_eval",
        (
            Phase("outputs.jsonl", "id", _is_model, 2),
            Phase("annotations.jsonl", "id", _is_judge, 2),
        ),
        ("metrics.json", "model_outputs.json", "annotations.json"),
        _alpaca_verdict,
    ),
    Case(
        "ablation",
        (
            *["ablation", "--bench", "gsm8k", "--name", "grid", "--axes", "proposers,baselines"],
            *f"--proposer-counts 1,2 --aggregator openai:{MODEL}".split(),
            *["--proposer", "openai:proposer-a", "--proposer", "openai:proposer-b"],
        ),
        "grid/gsm8k",
        # Killed in the grid's second configuration ("n=1", a one-proposer MoA): "moa" (two
        # proposers, then the aggregator) takes 15 calls for 5 problems; 6 of "n=1"'s 10
        # (its proposer is a seeded draw, so not in the LLM cache) finish two problems.
        (Phase("n=1/answers.jsonl", "id", _is_model, 15 + 6),),
        ("ablation.json", "ablation.csv", "ablation.md", "moa/metrics.json", "n=1/metrics.json"),
    ),
)


def test_every_benchmark_has_a_case() -> None:
    assert {b.name for b in registry.BENCHMARKS} <= {case.name for case in CASES}


@pytest.fixture
def servers() -> Iterator[tuple[ScriptedOpenAI, ScriptedOpenAI]]:
    """Two scripted servers: the uninterrupted run's, and the killed runs' (which holds)."""
    with ScriptedOpenAI() as whole, ScriptedOpenAI() as killed:
        yield whole, killed


def _env(server: ScriptedOpenAI) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MOA_DATA"))}
    return env | {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_BASE": server.base_url,
        "OPENAI_API_KEY": "scripted",
        # No request for alpaca_eval's LC files: length_controlled_minimal, offline.
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": tempfile.mkdtemp(prefix="moa-hf-cache-"),
    }


def _command(case: Case, out: Path) -> list[str]:
    common = ["--limit", str(LIMIT), "--concurrency", str(CONCURRENCY)]
    return [MOA, "eval", *case.args, *common, "--data-dir", str(FIXTURES), "--out", str(out)]


def _start(server: ScriptedOpenAI, case: Case, out: Path) -> subprocess.Popen[bytes]:
    command = _command(case, out)
    return subprocess.Popen(
        command, env=_env(server), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _complete(run: subprocess.Popen[bytes]) -> None:
    try:
        _, stderr = run.communicate(timeout=WAIT_S)
    finally:
        run.kill()  # a no-op once it has ended
    assert run.returncode == 0, stderr.decode()[-3000:]


def _complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def _kill_in(server: ScriptedOpenAI, case: Case, phase: Phase, out: Path) -> None:
    """Run until ``phase``'s file has a record and a request is held; then SIGKILL."""
    server.hold_after(phase.answered, where=phase.hold)
    store = out / case.folder / phase.store
    run = _start(server, case, out)
    try:
        deadline = time.monotonic() + WAIT_S
        while not (server.held and _complete_lines(store)):
            if run.poll() is not None:
                pytest.fail(f"the run ended before its kill: {run.communicate()[1][-3000:]!r}")
            assert time.monotonic() < deadline, "the run never reached its kill"
            time.sleep(0.02)
    finally:
        run.send_signal(signal.SIGKILL)  # kill -9 (a no-op if it has ended)
        run.communicate()
        server.release()
    assert run.returncode == -signal.SIGKILL
    assert not store.with_name("metrics.json").exists()  # killed before it was done


def _tear(store: Path, baseline: Path, key: str) -> bytes:
    """Append half of a record not yet in ``store``, as a kill mid-append leaves it."""
    done = {json.loads(line)[key] for line in store.read_bytes().splitlines()}
    missing = next(line for line in baseline.read_bytes().splitlines()
                   if json.loads(line)[key] not in done)  # fmt: skip
    torn = missing[: len(missing) // 2]
    with store.open("ab") as out:
        out.write(torn)
    return torn


def _stable(value: Any) -> Any:
    """``value`` without the fields that differ between two runs (`VOLATILE`)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _records(path: Path, key: str) -> dict[Any, Any]:
    """The file's records by key; every line complete, no key twice."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), f"{path} ends mid-line"
    records = [json.loads(line) for line in raw.splitlines()]  # each line a record
    by_key = {record[key]: _stable(record) for record in records}
    assert len(by_key) == len(records), f"{path} has a record twice"
    return by_key


def _content(path: Path, out: Path) -> Any:
    """A file's content to compare; ``out``, the results folder, named ``OUT`` in text."""
    if path.suffix not in {".json", ".csv", ".md"}:
        return path.read_bytes()
    text = path.read_text(encoding="utf-8").replace(str(out), "OUT")  # FLASK's chart's path
    if path.suffix == ".json":
        return _stable(json.loads(text))
    if path.suffix == ".csv":
        return _stable(list(csv.DictReader(io.StringIO(text))))
    # The ablation table in markdown: every column but the last, latency_s.
    lines = text.splitlines()
    assert lines[0].endswith("| latency_s |")
    return [line.rsplit("|", 2)[0] for line in lines]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_killed_run_resumes_to_the_same_files(
    case: Case, servers: tuple[ScriptedOpenAI, ScriptedOpenAI], tmp_path: Path
) -> None:
    for server in servers:
        server.answer = _judge_only(case.verdict) if case.verdict else None
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    # The uninterrupted run, beside the first killed one (its own server, never held).
    uninterrupted = _start(servers[0], case, whole)
    for number, phase in enumerate(case.phases):
        _kill_in(servers[1], case, phase, resumed)
        if number == 0:
            _complete(uninterrupted)  # its records give the torn line
        store = resumed / case.folder / phase.store
        torn = _tear(store, whole / case.folder / phase.store, phase.key)
        assert store.read_bytes().endswith(torn)
    _complete(_start(servers[1], case, resumed))

    for phase in case.phases:
        expected = _records(whole / case.folder / phase.store, phase.key)
        assert len(expected) == phase.records
        assert _records(resumed / case.folder / phase.store, phase.key) == expected
    for name in case.files:
        assert _content(resumed / case.folder / name, resumed) == _content(
            whole / case.folder / name, whole
        )
    # Every file of the uninterrupted run, and no other (no temporary file left behind).
    assert _files(resumed / case.folder) == _files(whole / case.folder)


def _judge_only(verdict: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], Any]:
    return lambda request: verdict(request) if _is_judge(request) else None


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
