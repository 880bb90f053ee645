"""Every figure table in the README and docs/ is what its committed results give.

``make figures`` writes them (``benchmarks/figures.py``); this fails when one is
edited by hand, or when its results change without it.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import figures
from langchain_moa.bench import provenance

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("path", figures.documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_figure_block_is_its_results_table(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert figures.rendered(text) == text, f"run `make figures`: {path} is out of date"


@pytest.mark.parametrize("name", sorted(figures.FIGURES))
def test_every_figure_is_published_and_says_where_it_comes_from(name: str) -> None:
    assert figures.placed()[name], f"no document shows the figure {name!r}"
    figure = figures.FIGURES[name]
    if isinstance(figure, figures.Example):
        assert "not a measurement" in figure.source.lower()
        assert figure.render().endswith(f"\n\n{figure.source}\n")
        return
    made = json.loads((ROOT / figure.results).read_text(encoding="utf-8"))["provenance"]
    assert {"date", "commit", "machine", "command"} <= set(made)
    assert {"cores", "cpu", "python"} <= set(made["machine"])
    assert made["commit"]
    block = figure.render()
    assert block.rstrip().endswith(f"`{made['command']}`.")
    assert f"{made['machine']['cores']} cores" in block


def test_a_table_edited_by_hand_is_caught() -> None:
    page = (ROOT / "docs" / "cost.md").read_text(encoding="utf-8")
    start = page.index("<!-- figure: fanout -->")
    edited = page[:start] + page[start:].replace("| per_turn | 16 |", "| per_turn | 15 |", 1)
    assert edited != page
    assert figures.rendered(edited) == page


def test_a_block_naming_no_figure_is_an_error() -> None:
    with pytest.raises(KeyError, match="'made-up'"):
        figures.rendered("<!-- figure: made-up -->\n| x |\n<!-- /figure -->\n")


def test_provenance_names_the_command_and_a_changed_checkout(tmp_path, monkeypatch) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "bench.py").write_text("x = 1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "add", "bench.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    monkeypatch.chdir(tmp_path)
    venv = tmp_path / "real-venv" / "bin"
    venv.mkdir(parents=True)
    (tmp_path / ".venv").symlink_to(tmp_path / "real-venv")
    monkeypatch.setattr(sys, "argv", [str(tmp_path / ".venv" / "bin" / "moa"), "bench"])
    made = provenance.provenance()
    assert made["command"] == ".venv/bin/moa bench"  # the symlink's name, as it was typed
    assert len(made["commit"]) == 40
    monkeypatch.setattr(sys, "argv", ["bench.py"])
    (tmp_path / "bench.py").write_text("x = 2\n")
    made = provenance.provenance(["--rounds", "3"])
    assert made["command"] == ".venv/bin/python bench.py --rounds 3"
    assert made["commit"].endswith("+changes")
