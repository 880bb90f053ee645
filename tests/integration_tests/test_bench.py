"""``moa bench --quick`` end to end: every measurement produces numbers (no timing targets)."""

import json
import math
import os
from pathlib import Path

import httpx
import pytest

from langchain_moa.bench.measure import REGISTRY
from langchain_moa.bench.process import ServerProcess
from langchain_moa.bench.server import Behaviour
from langchain_moa.cli import main

pytestmark = pytest.mark.timeout(120)


def _numbers(value: object) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    return []


def test_bench_quick_writes_every_measurement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--queries", "10", "--out", str(out)])
    report = json.loads(out.read_text())
    # Whether a speed target holds on this machine is the benchmark's finding, not a
    # test's; the exit code must say what the table says, and nothing may have crashed.
    assert code == (0 if all(row["holds"] for row in report["table"]) else 1)
    assert report["server"] == "process"
    results = report["measurements"]
    assert set(results) == {m.name for m in REGISTRY}
    for name, result in results.items():
        numbers = _numbers(result)
        assert numbers, name
        assert all(math.isfinite(n) for n in numbers), name
        assert result["value"] > 0, name
    load = results["concurrent_load"]
    assert load["queries"] == 10
    # Every query answered, none raised: a crash is not a missed target.
    assert load["errors"] == []
    assert load["answered"] == 10
    assert load["calls"] >= 10 * 13
    table = capsys.readouterr().out
    assert table.startswith("| measurement | value | target | holds |")
    assert len(report["table"]) == len(results)
    assert all(row["holds"] in {True, False} for row in report["table"])


def test_bench_only_runs_the_chosen(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--only", "3", "--in-thread", "--out", str(out)])
    report = json.loads(out.read_text())
    assert code == (0 if all(row["holds"] for row in report["table"]) else 1)
    assert set(report["measurements"]) == {"overhead_ms_per_call"}
    assert report["server"] == "thread"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes; Popen.wait reaps ours.
    return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")


def test_server_process_reports_its_records_and_ends() -> None:
    messages = [{"role": "user", "content": "[q7] how fast?"}]
    with ServerProcess({"fast": Behaviour.fixed(0.05, tokens=3)}) as server:
        pid = server.pid
        assert pid is not None
        assert pid != os.getpid()
        assert _alive(pid)
        reply = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "fast.L0.p0", "messages": messages},
        ).json()
        assert reply["choices"][0]["message"]["content"] == "w0 w1 w2"
        assert server.peak_in_flight() == server.peak_in_flight("fast") == 1
        [record] = server.records
        assert (record.model, record.query, record.schedule.total_s) == ("fast.L0.p0", 7, 0.05)
        assert record.ended - record.arrived >= 0.05
        assert server.reset() == [record]
        assert server.records == []
        assert server.errors == []
    assert not _alive(pid)


def test_server_process_ends_on_keyboard_interrupt() -> None:
    server = ServerProcess()
    pids: list[int | None] = []

    def interrupted() -> None:
        with server:
            pids.append(server.pid)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    [pid] = pids
    assert pid is not None
    assert not _alive(pid)
    server.stop()  # a second stop does nothing


def test_bench_refuses_unknown_measurements(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--only", "7"])
    assert "1-6" in capsys.readouterr().err
