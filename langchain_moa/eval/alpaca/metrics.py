"""AlpacaEval 2.0's metrics: the win rate, its standard error, the length-controlled win rate.

alpaca_eval 0.6.6's ``metrics/winrate.py`` and ``metrics/glm_winrate.py``, as pure functions
of the annotations. Importing this module needs the ``eval`` extra (numpy, scikit-learn).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_moa.eval.alpaca.judge import DRAW, FIRST_WINS, SECOND_WINS
from langchain_moa.eval.extras import INSTALL_HINT, MissingExtraError

try:
    import numpy as np
    import numpy.typing as npt

    # scikit-learn ships no type information.
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.model_selection import GroupKFold  # type: ignore[import-untyped]
except ImportError as error:
    _msg = f"AlpacaEval's metrics need numpy and scikit-learn (the eval extra): {INSTALL_HINT}"
    raise MissingExtraError(_msg) from error

# Length control (alpaca_eval/metrics/glm_winrate.py).
_C_GRID = np.logspace(-4, 4, 10)  # LogisticRegressionCV's default Cs=10
_GLM_RANDOM_STATE = 123
_CV_FOLDS = 5
_REGULARIZE_TO_BASELINE = 0.2
_EPSILON = 1e-15


def winrate_metrics(preferences: Sequence[float | None]) -> dict[str, float | int]:
    """alpaca_eval's ``get_winrate``: the win rate of ``output_2`` over ``output_1``.

    Args:
        preferences: One per pair, in [1, 2]; 0 and 1.5 are draws. None, NaN and values
            outside [1, 2] are dropped (they count in ``n_draws`` only if they are 0).

    Returns:
        ``win_rate`` (mean of ``preference - 1``, in percent) and its ``standard_error``;
        ``n_wins``, ``n_wins_base``, ``n_draws``, ``n_total``; and ``discrete_win_rate``,
        the same with each preference rounded to 1 or 2 (1.5 stays a draw).
    """
    values = [math.nan if p is None else float(p) for p in preferences]
    continuous = [DRAW if p == 0 else p for p in values]
    kept = [p for p in continuous if FIRST_WINS <= p <= SECOND_WINS]
    win_rate, standard_error = _mean_and_sem(np.array(kept) - 1)
    discrete = [_rounded(p) for p in values if not math.isnan(p)]
    discrete_kept = [p for p in discrete if FIRST_WINS <= p <= SECOND_WINS]
    discrete_win_rate, _ = _mean_and_sem(np.array(discrete_kept) - 1)
    return {
        "win_rate": win_rate * 100,
        "standard_error": standard_error * 100,
        "n_wins": sum(p > DRAW for p in kept),
        "n_wins_base": sum(p < DRAW for p in kept),
        "n_draws": sum(p == DRAW for p in continuous),
        "n_total": len(kept),
        "discrete_win_rate": discrete_win_rate * 100,
    }


def _rounded(preference: float) -> float:
    # round() halves to even, as pandas does; a draw stays a draw, and so does 0.
    rounded = 0 if preference == DRAW else round(preference)
    return DRAW if rounded == 0 else float(rounded)


def _mean_and_sem(values: npt.NDArray[np.float64]) -> tuple[float, float]:
    # pandas' mean and sem: NaN, without warnings, when there are too few values.
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    sem = float(np.sqrt(values.var(ddof=1)) / np.sqrt(n)) if n > 1 else math.nan
    return mean, sem


def length_controlled_winrate(
    annotations: Sequence[Mapping[str, Any]],
    instruction_difficulty: Mapping[str, float] | None = None,
    *,
    gamed_baselines: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, float | str | None]:
    """alpaca_eval's length-controlled win rate (``metrics/glm_winrate.py``).

    A logistic GLM of the preference (``preference - 1``, a probability) on
    ``tanh(std_delta_len)`` (the baseline's minus the model's output length in
    characters, divided by its standard deviation over the pairs), the instruction's
    difficulty and ``not_gamed_baseline``, without intercept, fitted as alpaca_eval fits
    it: each pair twice (label 1 weighted by p, label 0 by 1 - p), L1 penalty, liblinear,
    ``C`` chosen among ``logspace(-4, 4, 10)`` by 5-fold grouped cross-validation on the
    soft-label log loss, then refitted on all pairs. The LC win rate is the mean predicted
    preference with the length difference set to 0.

    alpaca_eval downloads two files from the Hugging Face dataset ``tatsu-lab/alpaca_eval``
    for this, and neither is in any repository: ``instruction_difficulty.csv`` and
    ``df_gamed.csv`` (the annotations of the length-gamed baselines
    ``gpt4_1106_preview_verbose`` and ``_concise``); `langchain_moa.eval.alpaca.hub`
    fetches them as it does. Hence three formulas:

    - ``length_controlled_v1`` (the leaderboard's), with ``instruction_difficulty`` and
      ``gamed_baselines``: the gamed baselines' pairs join the fit with weight 0.2 / 2
      and ``not_gamed_baseline = 0``, which pulls the length and difficulty coefficients
      towards the baseline's own.
    - ``length_controlled_noreg``, with ``instruction_difficulty`` only: without the gamed
      pairs ``not_gamed_baseline`` is 1 for every pair, a plain intercept, and nothing
      regularises towards the baseline.
    - ``length_controlled_minimal``, without ``instruction_difficulty``: the length term
      and the intercept; reproducible offline. Every pair then gets the same prediction,
      so ``lc_standard_error`` is 0 (up to rounding).

    Pairs whose preference is None or NaN are left out of the fit but, as in alpaca_eval,
    still count in the length standardisation and in the mean prediction. When the model
    is the baseline (``generator_1 == generator_2`` in every pair) the result is 50 by
    construction, as in alpaca_eval.

    Args:
        annotations: Pairs with ``instruction``, ``output_1`` (the baseline), ``output_2``
            (the model) and ``preference`` (a number, a numeric string or None).
        instruction_difficulty: alpaca_eval's ``instruction_difficulty.csv``, keyed by
            instruction (alpaca_eval keys it by the row's position in the 805).
        gamed_baselines: The rows of alpaca_eval's ``df_gamed.csv``: ``preference``
            (already in [0, 1]), ``std_delta_len`` and ``instruction_difficulty``.
            Ignored without ``instruction_difficulty``.

    Returns:
        ``length_controlled_winrate`` and ``lc_standard_error`` in percent (None, and
        ``formula`` saying why, with fewer judged instructions than CV folds), and
        ``formula``.
    """
    n = len(annotations)
    if instruction_difficulty is None:
        formula = "length_controlled_minimal"
    elif gamed_baselines is None:
        formula = "length_controlled_noreg"
    else:
        formula = "length_controlled_v1"
    if n and all(
        row.get("generator_1") is not None and row.get("generator_1") == row.get("generator_2")
        for row in annotations
    ):
        return _lc_result(np.full(n, 0.5), formula)

    delta = np.array([len(row["output_1"]) - len(row["output_2"]) for row in annotations], float)
    length = np.tanh(delta / delta.std(ddof=1))
    target = np.array([_as_float(row["preference"]) for row in annotations])
    target = np.where(target == 0, DRAW, target) - 1
    difficulty = []
    if instruction_difficulty is not None:
        # By instruction, where alpaca_eval takes the difficulty of the row's position among
        # the 805: the same for its complete files in order, but a file with rows missing or
        # reordered would get other instructions' difficulties there.
        difficulty = [np.array([instruction_difficulty[row["instruction"]] for row in annotations])]
    # The formula's columns, in its order: tanh(std_delta_len), [instruction_difficulty,]
    # not_gamed_baseline; predictions are made at a length difference of 0.
    features = np.column_stack([length, *difficulty, np.ones(n)])
    test = np.column_stack([np.zeros(n), *difficulty, np.ones(n)])
    weight = np.ones(n)

    judged = {
        row["instruction"] for row, p in zip(annotations, target, strict=True) if not math.isnan(p)
    }
    if len(judged) < _CV_FOLDS:
        # alpaca_eval's cross-validation needs a fold per instruction group.
        return {
            "length_controlled_winrate": None,
            "lc_standard_error": None,
            "formula": f"{formula} (not fitted: fewer than {_CV_FOLDS} judged instructions)",
        }
    if instruction_difficulty is not None and gamed_baselines is not None:
        features, target, weight = _prepend_gamed(features, target, weight, gamed_baselines)
    known = ~np.isnan(target)
    model = _fit_soft_logistic(features[known], target[known], weight[known])
    return _lc_result(model.predict_proba(test)[:, 1], formula)


def _prepend_gamed(
    features: npt.NDArray[np.float64],
    target: npt.NDArray[np.float64],
    weight: npt.NDArray[np.float64],
    gamed_baselines: Sequence[Mapping[str, Any]],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Add the gamed baselines' pairs before the model's, as alpaca_eval orders them.

    The order matters: it decides which pairs share a cross-validation fold.
    """
    columns = ("std_delta_len", "instruction_difficulty", "preference")
    gamed = np.array([[_as_float(row[c]) for c in columns] for row in gamed_baselines])
    gamed = gamed.reshape(-1, len(columns))
    gamed_features = np.column_stack([np.tanh(gamed[:, 0]), gamed[:, 1], np.zeros(len(gamed))])
    # Divided by 2 as in alpaca_eval: there are two gamed baselines.
    gamed_weight = np.full(len(gamed), _REGULARIZE_TO_BASELINE / 2)
    return (
        np.vstack([gamed_features, features]),
        np.concatenate([gamed[:, 2], target]),
        np.concatenate([gamed_weight, weight]),
    )


def _lc_result(predicted: npt.NDArray[np.float64], formula: str) -> dict[str, float | str | None]:
    mean, sem = _mean_and_sem(predicted)
    return {
        "length_controlled_winrate": mean * 100,
        "lc_standard_error": sem * 100,
        "formula": formula,
    }


def _fit_soft_logistic(
    features: npt.NDArray[np.float64],
    target: npt.NDArray[np.float64],
    weight: npt.NDArray[np.float64],
) -> LogisticRegression:
    """alpaca_eval's ``fit_LogisticRegressionCV`` with probabilities as labels.

    The same computation as its ``LogisticRegressionCV`` with a grouped splitter and a
    routed scorer, written as the loop it amounts to for liblinear (which ignores the
    warm start), so that no global scikit-learn setting is needed.
    """
    n = len(target)
    x = np.vstack([features, features])
    y = np.repeat([1, 0], n)
    # The probability of each copy's own label, as alpaca_eval builds it (1 - (1 - p)).
    true_prob = np.concatenate([target, 1 - target])
    row_weight = np.concatenate([weight, weight])
    sample_weight = true_prob * row_weight
    soft_label = np.where(y == 1, true_prob, 1 - true_prob)
    groups = np.tile(np.arange(n), 2)

    losses = np.zeros(len(_C_GRID))
    for train, held_out in GroupKFold(n_splits=_CV_FOLDS).split(x, y, groups):
        # Seeded as LogisticRegressionCV seeds liblinear: one generator per fold, drawn from
        # once per C along the grid. A fresh seed per fit moves where liblinear's L1 solver
        # stops, and with it the LC win rate by up to 0.05 points.
        fold_random_state = np.random.RandomState(_GLM_RANDOM_STATE)
        for i, c in enumerate(_C_GRID):
            fold_model = _liblinear(c, fold_random_state)
            fold_model.fit(x[train], y[train], sample_weight=sample_weight[train])
            predicted = np.clip(fold_model.predict_proba(x[held_out])[:, 1], _EPSILON, 1 - _EPSILON)
            p = soft_label[held_out]
            loglik = p * np.log(predicted) + (1 - p) * np.log(1 - predicted)
            losses[i] += -np.mean(loglik * row_weight[held_out])
    best_c = _C_GRID[np.argmin(losses)]
    # The refit starts a fresh generator, as LogisticRegressionCV's does.
    return _liblinear(best_c, _GLM_RANDOM_STATE).fit(x, y, sample_weight=sample_weight)


def _liblinear(c: float, random_state: int | np.random.RandomState) -> LogisticRegression:
    # l1_ratio=1 is penalty="l1" without scikit-learn 1.8's deprecation warning.
    return LogisticRegression(
        C=c, l1_ratio=1.0, solver="liblinear", fit_intercept=False, random_state=random_state
    )


def _as_float(value: Any) -> float:
    return math.nan if value is None else float(value)


def score_annotations(
    annotations: Sequence[Mapping[str, Any]],
    instruction_difficulty: Mapping[str, float] | None = None,
    *,
    gamed_baselines: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, float | int | str | None]:
    """A leaderboard row: `winrate_metrics`, ``avg_length`` and `length_controlled_winrate`.

    Args:
        annotations: Pairs with ``instruction``, ``output_1`` (the baseline), ``output_2``
            (the model) and ``preference`` (a number, a numeric string, or None when
            the judge's answer could not be parsed).
        instruction_difficulty: See `length_controlled_winrate`.
        gamed_baselines: See `length_controlled_winrate`.

    Returns:
        The win-rate fields; ``avg_length``, the model outputs' mean length in characters,
        truncated to an int as alpaca_eval does; and the length-controlled fields.
    """
    preferences = [_as_float(row["preference"]) for row in annotations]
    lengths = [len(row["output_2"]) for row in annotations]
    return {
        **winrate_metrics(preferences),
        "avg_length": int(sum(lengths) / len(lengths)),
        **length_controlled_winrate(
            annotations, instruction_difficulty, gamed_baselines=gamed_baselines
        ),
    }
