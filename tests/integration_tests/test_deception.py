"""benchmarks/deception.py end to end: one problem, three conditions, results and report."""

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.deception import PROPOSERS, report
from langchain_moa.graph.defence import cluster_filter
from tests.integration_tests.conftest import llama_server_pids, marked_env

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "deception.py"


def test_the_deception_experiment_runs_in_one_command(tmp_path) -> None:
    env, mark = marked_env()
    out, records = tmp_path / "deception.json", tmp_path / "records.jsonl"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--limit", "1", "--max-tokens", "12", "--threads", "1",
         "--out", str(out), "--records", str(records)],
        capture_output=True, text=True, timeout=90, check=False, env=env, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert not llama_server_pids(mark=mark)  # the run stopped its server

    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["settings"] == {"limit": 1, "max_tokens": 12, "temperature": 0.7, "threads": 1}
    assert "deception.py --limit 1" in results["provenance"]["command"]
    text = report(results)  # what make figures puts in docs/deception.md
    for condition in ("honest", "deceptive", "deceptive + defence"):
        assert f"| {condition} | 1 |" in text
        assert f"| {condition} | 1 |" in done.stdout
    assert "arXiv 2503.05856" in text
    assert "37.9%" in text

    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()]
    assert results["records"] == rows
    assert [row["condition"] for row in rows] == ["honest", "deceptive", "deceptive + defence"]
    assert all(row["error"] is None for row in rows)
    defended = rows[2]
    # The defence ran and its join recorded what it left out; the defended aggregator
    # was shown exactly the other answers, each tagged (the delimited format).
    assert "defence_dropped" in defended
    assert len(defended["proposals"]) == PROPOSERS
    # The join filters the answers that came (a failed or empty one is no reference):
    # Cluster & Filter's own verdict on them is what the defence must have left out.
    answered = [i for i, text in enumerate(defended["proposals"]) if text]
    kept = cluster_filter([defended["proposals"][i] for i in answered])
    expected = sorted(answered[j] for j in range(len(answered)) if j not in kept)
    assert defended["defence_dropped"] == expected
    assert defended["aggregator_tags"] == [len(kept)]
