"""The LC win rate with alpaca_eval's hub files, from a Hugging Face cache, against alpaca_eval.

The real ``df_gamed.csv`` and ``instruction_difficulty.csv`` are on the hub only; synthetic
files of the same layout stand in, in a temporary cache that alpaca_eval's own
``hf_hub_download`` reads too (offline), so both sides fit on the same files.
"""

import gzip
import io
import json
import warnings

import huggingface_hub
import numpy as np
import pandas as pd
import pytest
import sklearn
from alpaca_eval.metrics import glm_winrate

from langchain_moa import cli
from langchain_moa.eval import report
from langchain_moa.eval.alpaca import evaluate, hub
from tests.fixtures import FIXTURES
from tests.unit_tests.eval.hf_cache import fill_hf_cache, use_hf_cache

FIXTURE = FIXTURES / "alpaca_eval" / "alpaca-7b_weighted_alpaca_eval_gpt4_turbo_annotations.json.gz"
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def alpaca_7b():
    return json.loads(gzip.decompress(FIXTURE.read_bytes()))


@pytest.fixture(scope="module")
def perturbed(alpaca_7b):
    """Annotations no code here was tuned on: alpaca-7b's, judged and answered otherwise."""
    rng = np.random.default_rng(2024)
    rows = []
    for row in alpaca_7b:
        preference = float(np.clip(float(row["preference"]) + rng.normal(0, 0.35), 1, 2))
        cut = int(len(row["output_2"]) * rng.uniform(0.2, 1.5))
        output = (row["output_2"] * 2)[:cut]
        rows.append({**row, "preference": preference, "output_2": output})
    return rows


def hub_files(seed=7):
    """Synthetic df_gamed.csv and instruction_difficulty.csv for the 805 instructions."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 1, 805)
    gamed = pd.DataFrame(
        [
            {
                "model": model,
                "index": index,
                "preference": float(rng.uniform()),
                "std_delta_len": float(rng.normal()),
                "instruction_difficulty": float(difficulty[index]),
                "not_gamed_baseline": False,
            }
            for model in ("gpt4_1106_preview_verbose", "gpt4_1106_preview_concise")
            for index in range(805)
        ]
    )
    table = pd.DataFrame({"index": range(805), "instruction_difficulty": difficulty})
    return {
        hub.GAMED_FILE: gamed.to_csv(index=False),
        hub.DIFFICULTY_FILE: table.to_csv(index=False),
    }


@pytest.fixture
def filled_cache(tmp_path, monkeypatch):
    cache = use_hf_cache(monkeypatch, tmp_path / "hf")
    fill_hf_cache(cache, hub_files())
    return cache


def alpaca_eval_lc(annotations, glm_name):
    """alpaca_eval's own LC, its hub files read by its own hf_hub_download."""
    # alpaca_eval switches on scikit-learn's metadata routing globally (kept local here) and
    # uses its API deprecated since 1.8 (not ours to fix).
    with sklearn.config_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return glm_winrate.get_length_controlled_winrate(
            pd.DataFrame(annotations),
            glm_name=glm_name,
            save_weights_dir=None,
            is_warn_extreme_changes=False,
        )


def score_alpaca(tmp_path, capsys, annotations, *options):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(annotations), encoding="utf-8")
    assert cli.main(["eval", "score-alpaca", str(path), "--json", *options]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def assert_agree(ours, theirs):
    assert abs(ours["length_controlled_winrate"] - theirs["length_controlled_winrate"]) < TOLERANCE
    assert abs(ours["lc_standard_error"] - theirs["lc_standard_error"]) < TOLERANCE


@pytest.mark.parametrize("which", ["alpaca_7b", "perturbed"])
def test_score_alpaca_with_the_hub_files_cached_is_alpaca_evals_v1(
    which, request, filled_cache, tmp_path, capsys
) -> None:
    annotations = request.getfixturevalue(which)
    ours, said = score_alpaca(tmp_path, capsys, annotations)
    assert ours["formula"] == "length_controlled_v1"
    assert said == ""
    assert_agree(ours, alpaca_eval_lc(annotations, "length_controlled_v1"))


def test_local_files_give_v1_and_the_difficulty_alone_gives_noreg(
    perturbed, filled_cache, tmp_path, capsys
) -> None:
    files = hub_files()
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    gamed, difficulty = str(tmp_path / hub.GAMED_FILE), str(tmp_path / hub.DIFFICULTY_FILE)

    v1, _ = score_alpaca(tmp_path, capsys, perturbed, "--gamed-baselines", gamed)
    assert v1["formula"] == "length_controlled_v1"
    assert_agree(v1, alpaca_eval_lc(perturbed, "length_controlled_v1"))

    noreg, _ = score_alpaca(tmp_path, capsys, perturbed, "--instruction-difficulty", difficulty)
    assert noreg["formula"] == "length_controlled_noreg"
    assert_agree(noreg, alpaca_eval_lc(perturbed, "length_controlled_noreg"))


def test_without_the_hub_files_every_output_names_the_minimal_formula(
    perturbed, tmp_path, capsys, monkeypatch
) -> None:
    # The autouse fixture's cache is empty and offline.
    ours, said = score_alpaca(tmp_path, capsys, perturbed)
    assert ours["formula"] == "length_controlled_minimal"
    assert len(said.splitlines()) == 1
    assert "length_controlled_v1 needs df_gamed.csv and instruction_difficulty.csv" in said
    assert "LC reported as length_controlled_minimal" in said

    path = tmp_path / "annotations.json"
    assert cli.main(["eval", "score-alpaca", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"length_controlled_minimal: {ours['length_controlled_winrate']}" in text
    assert "length_controlled_winrate" not in text

    # alpaca_eval reads df_gamed.csv whatever the formula (the minimal one uses none of it).
    fill_hf_cache(use_hf_cache(monkeypatch, tmp_path / "hf"), hub_files())
    assert_agree(ours, alpaca_eval_lc(perturbed, "length_controlled_minimal"))


def test_difficulty_is_keyed_by_instruction_not_by_row(
    alpaca_7b, filled_cache, tmp_path, monkeypatch
) -> None:
    # Rows missing and the rest shuffled: each row keeps its own instruction's difficulty.
    rng = np.random.default_rng(3)
    kept = [row for index, row in enumerate(alpaca_7b) if index % 7]
    subset = [kept[i] for i in rng.permutation(len(kept))]
    instructions = [row["instruction"] for row in evaluate.load_reference_outputs()]
    files = hub.load_length_control_files(instructions)
    ours = evaluate.score(subset)
    assert ours["formula"] == "length_controlled_v1"

    difficulty, _, _ = hub.length_control_inputs(subset, files)
    assert difficulty is not None
    table = pd.read_csv(io.StringIO(hub_files()[hub.DIFFICULTY_FILE]))
    position = {instruction: i for i, instruction in enumerate(instructions)}
    for row in subset:
        expected = table["instruction_difficulty"][position[row["instruction"]]]
        assert difficulty[row["instruction"]] == expected

    # alpaca_eval keys the difficulty by row position, so it agrees on the subset only when
    # its file is reindexed to the subset's rows (noreg: the file gives only the difficulty).
    by_row = pd.DataFrame(
        {
            "model": "m",
            "index": range(len(subset)),
            "preference": 0.5,
            "std_delta_len": 0.0,
            "instruction_difficulty": [difficulty[row["instruction"]] for row in subset],
            "not_gamed_baseline": False,
        }
    )
    fill_hf_cache(use_hf_cache(monkeypatch, tmp_path / "by_row"), {hub.GAMED_FILE: by_row.to_csv()})
    noreg_files = hub.LengthControlFiles(files.instruction_difficulty, None)
    noreg = evaluate.score_with_files(subset, noreg_files)
    assert noreg["formula"] == "length_controlled_noreg"
    assert_agree(noreg, alpaca_eval_lc(subset, "length_controlled_noreg"))


def test_the_cache_is_read_before_any_download(filled_cache, monkeypatch) -> None:
    calls = []
    real = huggingface_hub.hf_hub_download

    def recording(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", recording)
    assert hub.hub_file(hub.GAMED_FILE).read_text(encoding="utf-8").startswith("model,index,")
    assert calls == [
        {
            "repo_id": "tatsu-lab/alpaca_eval",
            "filename": "df_gamed.csv",
            "repo_type": "dataset",
            "local_files_only": True,
        }
    ]


def test_a_file_without_the_columns_is_said(tmp_path, monkeypatch, capsys) -> None:
    cache = use_hf_cache(monkeypatch, tmp_path / "hf")
    fill_hf_cache(cache, {hub.GAMED_FILE: "model,index\nm,0\n", hub.DIFFICULTY_FILE: "index\n0\n"})
    with pytest.raises(hub.HubFilesUnavailableError, match="lack a column"):
        hub.load_length_control_files(["x"])
    assert hub.fetch_or_say(["x"]) is None
    assert "LC reported as length_controlled_minimal" in capsys.readouterr().err


def test_instructions_outside_the_805_fall_back_to_minimal_and_say_so(
    alpaca_7b, filled_cache, capsys
) -> None:
    own = [{**row, "instruction": f"mine {i}"} for i, row in enumerate(alpaca_7b[:50])]
    assert evaluate.score(own)["formula"] == "length_controlled_minimal"
    said = capsys.readouterr().err
    assert "50 annotated instructions are not among AlpacaEval's 805" in said


def test_the_report_shows_v1_for_a_run_scored_before_the_files_were_had(
    alpaca_7b, tmp_path, monkeypatch, capsys
) -> None:
    results = tmp_path / "out"
    run = results / "moa" / "alpaca_eval"
    run.mkdir(parents=True)
    (run / "annotations.json").write_text(json.dumps(alpaca_7b), encoding="utf-8")
    # Scored offline, with the autouse fixture's empty cache.
    report.write_metrics(run, evaluate.score(alpaca_7b))
    assert "| AlpacaEval length_controlled_minimal |" in report.render(results)

    fill_hf_cache(use_hf_cache(monkeypatch, tmp_path / "hf"), hub_files())
    assert "| AlpacaEval length_controlled_v1 |" in report.render(results)
    shown = report.collect(results)["moa"]["alpaca_eval"]
    assert shown["formula"] == "length_controlled_v1"
    assert_agree(shown, alpaca_eval_lc(alpaca_7b, "length_controlled_v1"))
    # The saved metrics are left as they were.
    saved = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert saved["formula"] == "length_controlled_minimal"


def test_a_failed_fetch_is_tried_and_said_once_per_process(monkeypatch, capsys) -> None:
    # The autouse fixture's cache is empty and offline.
    tries = []
    real = hub.load_length_control_files
    monkeypatch.setattr(hub, "load_length_control_files", lambda i: tries.append(i) or real(i))
    assert hub.fetch_or_say(["x"]) is None
    assert hub.fetch_or_say(["x"]) is None
    assert tries == [["x"]]
    assert len(capsys.readouterr().err.splitlines()) == 1
