"""``moa bench --quick`` end to end: every measurement produces numbers (no timing targets)."""

import json
import math
from pathlib import Path

import pytest

from langchain_moa.bench.measure import TARGETS
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
    # 0 or 1: whether a target holds on this machine is the benchmark's finding, not a test's.
    assert main(["bench", "--quick", "--queries", "10", "--out", str(out)]) in {0, 1}
    report = json.loads(out.read_text())
    results = report["measurements"]
    assert set(results) == {*TARGETS, "concurrent_load"}
    for name, result in results.items():
        numbers = _numbers(result)
        assert numbers, name
        assert all(math.isfinite(n) for n in numbers), name
        assert result["value"] > 0, name
    load = results["concurrent_load"]
    assert load["queries"] == 10
    assert load["calls"] >= 10 * 13
    table = capsys.readouterr().out
    assert table.startswith("| measurement | value | target | holds |")
    assert len(report["table"]) == len(results)
    assert all(row["holds"] in {True, False} for row in report["table"])


def test_bench_only_runs_the_chosen(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    main(["bench", "--quick", "--only", "3", "--out", str(out)])
    assert set(json.loads(out.read_text())["measurements"]) == {"overhead_ms_per_call"}


def test_bench_refuses_unknown_measurements(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--only", "7"])
    assert "1-6" in capsys.readouterr().err
