"""How alike WordLlama's embeddings find texts: what early stop's threshold is set against.

Every pair of each set's texts is embedded with the default embeddings of early
stop by meaning (``langchain_moa.graph.agreement.default_embeddings``: WordLlama,
offline) and scored by cosine similarity, as ``early_stop={"method":
"embedding"}`` scores a layer's answers. The sets: short paraphrases of one answer;
the same sentence with a different fact; unrelated texts.
``tests/unit_tests/test_agreement.py`` checks the orderings on the same sets.

Usage::

    .venv/bin/python benchmarks/similarity.py [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from langchain_moa.bench.provenance import provenance
from langchain_moa.graph.agreement import default_embeddings

PARAPHRASES = [
    "The capital of France is Paris.",
    "Paris is France's capital city.",
    "France's capital is Paris, which is also its largest city.",
    "The answer is Paris: it has been the capital of France for centuries.",
]
DIFFERENT_ANSWERS = [
    "The capital of France is Paris.",
    "The capital of France is Lyon.",
    "The capital of France is Marseille.",
]
UNRELATED = [
    "Photosynthesis converts light energy into chemical energy in plants.",
    "To reverse a linked list, iterate while swapping each node's next pointer.",
    "Preheat the oven to 200 degrees and bake the bread for 30 minutes.",
    "The stock market fell sharply on Tuesday after the interest rate announcement.",
]


def sets() -> dict[str, list[str]]:
    """Each set of texts, by what it holds."""
    return {
        "paraphrases of one short answer": PARAPHRASES,
        "one sentence, a different fact": DIFFERENT_ANSWERS,
        "unrelated texts": UNRELATED,
    }


def pairwise(texts: Sequence[str]) -> list[float]:
    """Every pair's cosine similarity (the embeddings are unit vectors)."""
    vectors = default_embeddings().embed_documents(list(texts))
    return [sum(x * y for x, y in zip(a, b, strict=True)) for a, b in combinations(vectors, 2)]


def measure() -> list[dict[str, Any]]:
    """Per set: its texts' count, its pairs' least and greatest similarity."""
    rows = []
    for name, texts in sets().items():
        scores = pairwise(texts)
        rows.append({"set": name, "texts": len(texts), "min": min(scores), "max": max(scores)})
    return rows


def markdown(report: Mapping[str, Any]) -> str:
    """The table."""
    lines = ["| texts | how many | cosine similarity of a pair |", "|---|--:|---|"]
    lines += [
        f"| {row['set']} | {row['texts']} | {row['min']:.2f} to {row['max']:.2f} |"
        for row in report["rows"]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the table; write it with its provenance to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    report = {"provenance": provenance(argv), "rows": measure()}
    print(markdown(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
