"""Bootstrapped 95% intervals for the benchmarks' headline metrics.

Arena-Hard-Auto reports each score with a bootstrapped 95% interval; here the same is done
for GSM8K's accuracy, MT-Bench's and FLASK's averages (AlpacaEval's win rates carry
alpaca_eval's standard errors instead). The items a metric averages over are resampled
with replacement, `RESAMPLES` times from a generator seeded with `SEED`, and the interval
is the 2.5th and 97.5th percentiles of the resampled metric: the same records always give
the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from langchain_moa.eval.extras import require

RESAMPLES = 1000
"""Bootstrap resamples per interval."""
SEED = 0
"""The resampling generator's seed."""
LEVEL = 0.95
"""The intervals' coverage."""

Item = TypeVar("Item")


def bootstrap_interval(
    items: Sequence[Item],
    statistic: Callable[[Sequence[Item]], float | None],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> list[float] | None:
    """The percentile bootstrap interval of ``statistic`` over ``items``.

    Args:
        items: The units that are resampled (problems, questions, reviews).
        statistic: The metric of a sample of them; None where it is undefined (such a
            resample is left out).
        resamples: How many resamples.
        seed: The generator's seed.
        level: The interval's coverage.

    Returns:
        ``[low, high]``, or None where there are no items or no resample had a value.

    Raises:
        MissingExtraError: numpy is not installed.
    """
    if not items:
        return None
    require("numpy", purpose="bootstrapped intervals")
    import numpy as np  # noqa: PLC0415 - the eval extra

    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(items), size=(resamples, len(items)))
    values = [statistic([items[i] for i in draw]) for draw in draws]
    kept = np.array([value for value in values if value is not None], dtype=float)
    if not kept.size:
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(kept, [tail, 100 - tail])
    return [float(low), float(high)]


def mean(values: Sequence[float]) -> float | None:
    """The mean, None for no values."""
    return sum(values) / len(values) if values else None


def mean_interval(values: Sequence[float], **settings: Any) -> list[float] | None:
    """`bootstrap_interval` of the mean of ``values`` (each value one unit)."""
    return bootstrap_interval(values, mean, **settings)


def pooled_mean_interval(groups: Sequence[Sequence[float]], **settings: Any) -> list[float] | None:
    """`bootstrap_interval` of the mean of all values, resampling whole groups.

    Scores that share an item (MT-Bench's two turns of one question) are not independent;
    resampling the item keeps them together.
    """

    def pooled(sample: Sequence[Sequence[float]]) -> float | None:
        return mean([value for group in sample for value in group])

    return bootstrap_interval(groups, pooled, **settings)
