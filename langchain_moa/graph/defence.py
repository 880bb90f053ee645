"""Cluster & Filter: drop the references that disagree with the majority before aggregating.

A defence against a deceptive proposer from Wolf, Yoon and Bogunovic, "This Is Your Doge,
If It Please You: Exploring Deception and Robustness in Mixture of LLMs" (arXiv 2503.05856,
2025). There, one deceptive agent of six cut a 3-layer MoA's AlpacaEval 2.0 LC win rate
from 49.2 % to 37.9 %; their unsupervised defences recover most of the loss.

**The paper's Cluster & Filter** (``clustering`` in their code, lorenzflow/robust-moa,
``defenses.py``): embed the last layer's references with a sentence-embedding model
(all-MiniLM-L6-v2, mean-pooled, or OpenAI's text-embedding-3-small), split them into two
clusters with k-means (or spectral clustering), and let the aggregator see only the larger
cluster. The bet is that honest answers resemble each other more than the deceptive one.
Their **Dropout & Vote / Dropout & Cluster** run the aggregator on subsets of the
references (every non-empty subset in their code) and then vote or cluster; that costs up
to 2^n - 1 aggregator calls per answer and is not implemented here.

**What differs here.** No embedding model is available offline and the core package stays
light, so the texts are compared by a pure-Python kernel instead of an embedding:

* ``words``: cosine of the bag-of-words count vectors (lower-cased letter runs);
* ``numbers``: cosine of the bag-of-numbers vectors (every number, ``1,000`` read as
  ``1000``, ``18.0`` as ``18``): answers that compute the same quantities agree;
* ``final``: 1 where both texts' last numbers are equal, else 0: on a maths problem
  the last number is the answer (GSM8K's flexible extraction reads it the same way).

and the similarity is the weighted sum ``K(a, b) = w_words cos_words(a, b) + w_numbers
cos_numbers(a, b) + w_final [final(a) = final(b)]`` (a block a text lacks, e.g. no number,
contributes 0). Each term is a positive semi-definite kernel, so ``K`` is one, and the two
clusters are found by kernel 2-means, k-means in ``K``'s feature space: the split ``(A,
B)`` minimizing ``SSE(A) + SSE(B)`` with::

    SSE(S) = sum(K(i, i) for i in S) - sum(K(i, j) for i in S for j in S) / |S|

(the squared distances to the cluster's mean in feature space). Up to `EXACT_LIMIT`
references every split is tried (2^(n-1) - 1 of them; the first best in a fixed order
wins), so the answer is the global optimum and deterministic, where the paper's k-means
is a seeded local search. Beyond it, Lloyd's iterations start from the least similar pair.

**Where it departs from the paper on purpose**:

* fewer than 3 references are all kept (two texts give no majority);
* a tie (two clusters of equal size) keeps everything, where the paper's code keeps its
  second cluster: with no majority there is no evidence of which side deceives;
* all texts identical (zero spread) keeps everything.

Otherwise the larger cluster is a strict majority, so at least half the references are
always kept.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import combinations

EXACT_LIMIT = 12
"""Up to this many references every two-way split is scored (2,047 splits at 12)."""
WORD_WEIGHT = 1.0
"""``w_words``: weight of the bag-of-words cosine."""
NUMBER_WEIGHT = 1.0
"""``w_numbers``: weight of the bag-of-numbers cosine."""
FINAL_WEIGHT = 1.0
"""``w_final``: weight of the last numbers' agreement."""

_WORD = re.compile(r"[^\W\d_]+")
# A number as a text writes it: sign, thousands commas, decimals; "3-5" is 3 and 5.
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?|(?<![\w.])\.\d+")
_TINY = 1e-9


@dataclass(frozen=True)
class _Features:
    words: Counter[str]
    numbers: Counter[str]
    final: str | None


def _number(text: str) -> str | None:
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None
    return format(value.normalize(), "f") if value else "0"


def numbers(text: str) -> list[str]:
    """Every number in ``text``, in order, normalized (``1,000`` is ``1000``, ``18.0`` ``18``)."""
    found = [_number(match.rstrip(",")) for match in _NUMBER.findall(text)]
    return [number for number in found if number is not None]


def _features(text: str) -> _Features:
    found = numbers(text)
    return _Features(
        words=Counter(_WORD.findall(text.lower())),
        numbers=Counter(found),
        final=found[-1] if found else None,
    )


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(count * b[key] for key, count in a.items() if key in b)
    norm = math.sqrt(sum(c * c for c in a.values())) * math.sqrt(sum(c * c for c in b.values()))
    return dot / norm


def _kernel(a: _Features, b: _Features, weights: tuple[float, float, float]) -> float:
    word_weight, number_weight, final_weight = weights
    same_final = a.final is not None and a.final == b.final
    return (
        word_weight * _cosine(a.words, b.words)
        + number_weight * _cosine(a.numbers, b.numbers)
        + final_weight * same_final
    )


def similarity_matrix(
    references: Sequence[str],
    *,
    word_weight: float = WORD_WEIGHT,
    number_weight: float = NUMBER_WEIGHT,
    final_weight: float = FINAL_WEIGHT,
) -> list[list[float]]:
    """``K(i, j)`` for every pair of references (see the module's note for the formula)."""
    features = [_features(text) for text in references]
    weights = (word_weight, number_weight, final_weight)
    return [[_kernel(a, b, weights) for b in features] for a in features]


def _sse(kernel: Sequence[Sequence[float]], members: Sequence[int]) -> float:
    if not members:
        return 0.0
    inner = sum(kernel[i][j] for i in members for j in members)
    return sum(kernel[i][i] for i in members) - inner / len(members)


def _exact_split(kernel: Sequence[Sequence[float]]) -> tuple[list[int], list[int]]:
    count = len(kernel)
    best: tuple[float, list[int], list[int]] | None = None
    # Reference 0 is always in the first cluster: each split is counted once.
    rest = range(1, count)
    for size in range(count - 1):
        for others in combinations(rest, size):
            first = [0, *others]
            second = [i for i in rest if i not in others]
            cost = _sse(kernel, first) + _sse(kernel, second)
            if best is None or cost < best[0] - _TINY:
                best = (cost, first, second)
    assert best is not None  # noqa: S101 - count >= 2 gives at least one split
    return best[1], best[2]


def _lloyd_split(
    kernel: Sequence[Sequence[float]], rounds: int = 50
) -> tuple[list[int], list[int]]:
    count = len(kernel)
    # Start from the least similar pair (the first such pair in index order).
    seed_a, seed_b = min(combinations(range(count), 2), key=lambda pair: kernel[pair[0]][pair[1]])
    clusters = ([seed_a], [seed_b])
    for _ in range(rounds):
        # Squared feature-space distance of each reference to each cluster's mean.
        inner = [sum(kernel[j][k] for j in c for k in c) / len(c) ** 2 for c in clusters]
        distances = [
            [
                kernel[i][i] - 2 * sum(kernel[i][j] for j in members) / len(members) + inner[side]
                for side, members in enumerate(clusters)
            ]
            for i in range(count)
        ]
        first = [i for i in range(count) if distances[i][0] <= distances[i][1]]
        second = [i for i in range(count) if distances[i][0] > distances[i][1]]
        if not first or not second or (first, second) == clusters:
            break
        clusters = (first, second)
    return clusters


def _split(kernel: Sequence[Sequence[float]]) -> tuple[list[int], list[int]]:
    return _exact_split(kernel) if len(kernel) <= EXACT_LIMIT else _lloyd_split(kernel)


def two_clusters(
    references: Sequence[str],
    *,
    word_weight: float = WORD_WEIGHT,
    number_weight: float = NUMBER_WEIGHT,
    final_weight: float = FINAL_WEIGHT,
) -> tuple[list[int], list[int]]:
    """The references' kernel 2-means split, as two lists of indices (the first holds 0).

    Raises:
        ValueError: fewer than 2 references.
    """
    if len(references) < 2:  # noqa: PLR2004 - a split needs two
        msg = f"two clusters need at least 2 references, got {len(references)}"
        raise ValueError(msg)
    kernel = similarity_matrix(
        references, word_weight=word_weight, number_weight=number_weight, final_weight=final_weight
    )
    return _split(kernel)


def cluster_filter(
    references: Sequence[str],
    *,
    word_weight: float = WORD_WEIGHT,
    number_weight: float = NUMBER_WEIGHT,
    final_weight: float = FINAL_WEIGHT,
) -> list[int]:
    """Cluster & Filter (arXiv 2503.05856): the indices of the references to keep, in order.

    The references are split in two by kernel 2-means (see the module's note for the
    similarity and how it differs from the paper's embeddings) and the larger cluster is
    kept. Everything is kept with fewer than 3 references, on a tie between the clusters,
    and when all references are the same; so at least half are always kept. The result
    depends on the texts alone (no randomness).

    Args:
        references: One layer's answers, in proposer order.
        word_weight: ``w_words``.
        number_weight: ``w_numbers``.
        final_weight: ``w_final``.

    Returns:
        The kept indices, ascending.
    """
    count = len(references)
    everything = list(range(count))
    if count < 3:  # noqa: PLR2004 - two texts give no majority
        return everything
    kernel = similarity_matrix(
        references, word_weight=word_weight, number_weight=number_weight, final_weight=final_weight
    )
    if _sse(kernel, everything) < _TINY:
        return everything
    first, second = _split(kernel)
    if len(first) == len(second):
        return everything
    return sorted(first if len(first) > len(second) else second)
