"""``moa bench``'s table rows come from its one registry of measurements."""

import json
from pathlib import Path

from langchain_moa.bench.measure import MEASUREMENTS, REGISTRY, table_rows

RESULTS = Path(__file__).parents[2] / "docs" / "results" / "bench.json"


def test_the_registry_gives_the_committed_run_s_rows() -> None:
    # Made by the code before the registry: the same results must give the same rows.
    report = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert table_rows(report["measurements"]) == report["table"]


def test_every_measurement_has_one_entry_and_a_number() -> None:
    names = [m.name for m in REGISTRY]
    assert len(names) == len(set(names))
    assert MEASUREMENTS == (1, 2, 3, 4, 5, 6)


def test_a_missed_target_says_so() -> None:
    report = json.loads(RESULTS.read_text(encoding="utf-8"))
    worse = {**report["measurements"]["overhead_ms_per_call"], "value": 9.0}
    (row,) = table_rows({"overhead_ms_per_call": worse})
    assert row["holds"] is False
    assert row["value"] == "9.000 ms"
