import json

import pytest

from langchain_moa.eval import report


def _write(folder, run, bench, metrics):
    path = folder / run / bench / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(metrics))


def test_table_has_a_row_per_run_and_the_papers_columns(tmp_path) -> None:
    _write(tmp_path, "moa", "gsm8k", {"accuracy": 50.0})
    _write(
        tmp_path,
        "moa",
        "alpaca_eval",
        {"length_controlled_winrate": 65.1, "win_rate": 59.8, "formula": "length_controlled_v1"},
    )
    _write(tmp_path, "single", "gsm8k", {"accuracy": 25.0})
    # An ablation's per-configuration folders are not runs.
    _write(tmp_path / "ablation", "gsm8k", "n=1", {"accuracy": 1.0})
    (tmp_path / "ablation" / "gsm8k" / "ablation.md").write_text("| configuration |\n")
    text = report.render(tmp_path)
    lines = text.splitlines()
    assert lines[0] == (
        "| run | AlpacaEval length_controlled_v1 | AlpacaEval win | avg length "
        "| MT-Bench | FLASK avg | GSM8K acc |"
    )
    assert "| moa | 65.10 | 59.80 | - | - | - | 50.00 |" in lines
    assert "| single | - | - | - | - | - | 25.00 |" in lines
    assert "ablation/gsm8k/ablation.md:" in text


def test_lc_heading_names_the_formula_and_mixed_formulas_are_named_per_run(tmp_path) -> None:
    for run, formula in [("offline", "length_controlled_minimal"), ("hub", "length_controlled_v1")]:
        metrics = {"length_controlled_winrate": 20.0, "formula": formula}
        _write(tmp_path, run, "alpaca_eval", metrics)
    _write(tmp_path, "other", "gsm8k", {"accuracy": 25.0})
    lines = report.render(tmp_path).splitlines()
    assert lines[0].startswith("| run | AlpacaEval (formula in each cell) | AlpacaEval win |")
    assert "| offline | 20.00 (length_controlled_minimal) | - |" in "\n".join(lines)
    assert "| hub | 20.00 (length_controlled_v1) | - |" in "\n".join(lines)
    assert any(line.startswith("| other | - | - |") for line in lines)
    assert "LC" not in lines[0]


def test_no_results_is_an_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no metrics\.json of any benchmark"):
        report.render(tmp_path)
    with pytest.raises(FileNotFoundError, match="results folder not found"):
        report.render(tmp_path / "missing")


def test_flask_per_skill_table_and_radar_chart(tmp_path) -> None:
    skills = {"Readability": 4.0, "Conciseness": None, "Factuality": 3.5}
    _write(tmp_path, "moa", "flask", {"average": 3.75, "per_skill": skills})
    _write(tmp_path, "lite", "flask", {"average": 3.0, "per_skill": {**skills, "Readability": 2.5}})
    text = report.render(tmp_path)
    assert "| run | Readability | Conciseness | Factuality |" in text
    assert "| moa | 4.00 | - | 3.50 |" in text
    assert "| lite | 2.50 | - | 3.50 |" in text
    assert f"plot: {tmp_path / 'flask_radar.png'}" in text
    assert (tmp_path / "flask_radar.png").read_bytes()[:4] == b"\x89PNG"


def test_headline_cells_carry_their_interval_or_standard_error(tmp_path) -> None:
    _write(tmp_path, "moa", "gsm8k", {"accuracy": 50.0, "accuracy_ci": [40.0, 60.25]})
    _write(tmp_path, "moa", "mt_bench", {"overall": 7.5, "overall_ci": None})
    _write(tmp_path, "moa", "alpaca_eval", {"win_rate": 59.8, "standard_error": 1.234})
    row = next(line for line in report.render(tmp_path).splitlines() if line.startswith("| moa"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert "50.00 (40.00\N{EN DASH}60.25)" in cells
    assert "59.80 \N{PLUS-MINUS SIGN} 1.23" in cells
    assert "7.50" in cells  # no interval recorded
