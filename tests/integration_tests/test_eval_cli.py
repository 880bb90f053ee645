"""``moa eval`` end to end, offline, on the embedded model (generator and judge)."""

import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.fixtures import FIXTURES
from tests.integration_tests.conftest import llama_server_pids, marked_env

MOA = str(Path(sys.executable).with_name("moa"))
SHORT = ["--max-tokens", "24"]
FIXTURE_DATA = ["--limit", "3", *SHORT, "--data-dir", str(FIXTURES)]
# No --data-dir: the data shipped in the package, as a user runs it.
GSM8K_PACKAGED = ["gsm8k", "--limit", "2", *SHORT]
EMPTY_HF_CACHE = tempfile.mkdtemp(prefix="moa-hf-cache-")


def _moa(*args: str) -> subprocess.CompletedProcess[str]:
    env, mark = marked_env()
    env.pop("MOA_DATA_DIR", None)
    # An empty Hugging Face cache, offline: no request for alpaca_eval's LC files, whose
    # absence gives length_controlled_minimal.
    env |= {"HF_HUB_CACHE": EMPTY_HF_CACHE, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [MOA, "eval", *args], capture_output=True, text=True, timeout=600, check=False, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not llama_server_pids(mark=mark)  # the run stopped its server
    return done


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval")
    _moa("alpaca", *FIXTURE_DATA, "--out", str(out))
    _moa("mt-bench", "--limit", "1", *SHORT, "--judge-max-tokens", "32", "--out", str(out))
    _moa("flask", *FIXTURE_DATA, "--judge-max-tokens", "48", "--out", str(out))
    _moa(*GSM8K_PACKAGED, "--out", str(out))
    return out / "local"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_alpaca_outputs_and_judgements(results) -> None:
    outputs = json.loads((results / "alpaca_eval" / "model_outputs.json").read_text())
    assert len(outputs) == 3
    assert all(
        o["output"].strip() and o["generator"] == "moa-2l:smollm2-135m-instruct" for o in outputs
    )
    annotations = json.loads((results / "alpaca_eval" / "annotations.json").read_text())
    assert len(annotations) == 3
    # The local judge returns real top-5 logprobs; at least one names m or M.
    assert any(a["preference_source"] == "logprobs" for a in annotations)
    metrics = json.loads((results / "alpaca_eval" / "metrics.json").read_text())
    assert metrics["n_total"] + metrics["n_unparsed_judgements"] == 3
    assert metrics["generation"]["usage"]["smollm2-135m-instruct"]["calls"] == 3 * 4


def test_mt_bench_answers_and_judgments(results) -> None:
    answers = _jsonl(results / "mt_bench" / "model_answer.jsonl")
    assert [a["question_id"] for a in answers] == [81]  # the packaged questions' first
    assert [len(a["choices"][0]["turns"]) for a in answers] == [2]
    judgments = _jsonl(results / "mt_bench" / "judgments.jsonl")
    assert len(judgments) == 2
    assert all(j["judgment"] for j in judgments)
    metrics = json.loads((results / "mt_bench" / "metrics.json").read_text())
    assert metrics["n_judgments"] == 2
    assert metrics["n_scored"] + metrics["n_unparseable"] == 2


def test_flask_reviews(results) -> None:
    reviews = _jsonl(results / "flask" / "reviews.jsonl")
    assert len(reviews) == 3
    assert all(len(r["skills"]) == 3 and r["review"] for r in reviews)
    assert json.loads((results / "flask" / "metrics.json").read_text())["n_reviews"] == 3


def test_gsm8k_scores(results) -> None:
    metrics = json.loads((results / "gsm8k" / "metrics.json").read_text())
    assert metrics["n_total"] == 2
    assert 0 <= metrics["accuracy"] <= 100
    # Appended as each finishes: put them back in the test set's order.
    answers = sorted(_jsonl(results / "gsm8k" / "answers.jsonl"), key=lambda a: a["id"])
    assert [a["target"] for a in answers] == ["18", "3"]  # the packaged test set's first two


def test_report_shows_every_benchmark(results) -> None:
    done = _moa("report", str(results.parent))
    lines = done.stdout.splitlines()
    # Three instructions are too few for the GLM, and the heading says which LC it is not.
    assert lines[0].startswith(
        "| run | AlpacaEval length_controlled_minimal (not fitted: fewer than 5 judged "
        "instructions) | AlpacaEval win |"
    )
    row = next(line for line in lines if line.startswith("| local |"))
    gsm8k = json.loads((results / "gsm8k" / "metrics.json").read_text())
    low, high = gsm8k["accuracy_ci"]
    assert row.endswith(f"| {gsm8k['accuracy']:.2f} ({low:.2f}\N{EN DASH}{high:.2f}) |")


def test_rerun_is_resumed_from_disk(results) -> None:
    before = (results / "gsm8k" / "answers.jsonl").read_text()
    done = _moa(*GSM8K_PACKAGED, "--out", str(results.parent), "--no-cache")
    assert "gsm8k: " not in done.stderr  # nothing left to do, no progress line
    assert (results / "gsm8k" / "answers.jsonl").read_text() == before


def test_ablation_grid_on_the_local_model(tmp_path) -> None:
    _moa(
        "ablation", "--bench", "gsm8k", "--limit", "2", "--max-tokens", "24",
        "--data-dir", str(FIXTURES), "--out", str(tmp_path),
        "--axes", "ranker,proposers,single", "--proposer-counts", "1,2",
    )  # fmt: skip
    with (tmp_path / "ablation" / "gsm8k" / "ablation.csv").open() as table:
        rows = list(csv.DictReader(table))
    assert [r["configuration"] for r in rows] == [
        "moa", "llm-ranker", "n=1", "n=2", "single-proposer n=1", "multiple-proposer n=1",
    ]  # fmt: skip
    by_name = {r["configuration"]: r for r in rows}
    assert int(by_name["moa"]["calls"]) == 2 * 2  # one proposer and the aggregator
    assert int(by_name["n=2"]["calls"]) == 2 * 3
    assert all(int(r["output_tokens"]) > 0 for r in rows)
    assert (
        (tmp_path / "ablation" / "gsm8k" / "ablation.md")
        .read_text()
        .startswith("| configuration | axis | accuracy |")
    )
