"""Every figure table in the README and docs/ is what its committed results give.

``make figures`` writes them (``benchmarks/figures.py``); this fails when one is
edited by hand, or when its results change without it.
"""

import json
from pathlib import Path

import pytest

from benchmarks import figures

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
        assert "not a measurement" in figure.source
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
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- figure: fanout -->")
    edited = readme[:start] + readme[start:].replace("| per_turn | 16 |", "| per_turn | 15 |", 1)
    assert edited != readme
    assert figures.rendered(edited) == readme


def test_a_block_naming_no_figure_is_an_error() -> None:
    with pytest.raises(KeyError, match="'made-up'"):
        figures.rendered("<!-- figure: made-up -->\n| x |\n<!-- /figure -->\n")
