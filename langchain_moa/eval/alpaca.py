"""AlpacaEval 2.0: the weighted GPT-4 Turbo pairwise judge and its metrics.

``run`` generates the answers and has a judge compare them with the reference;
the rest are pure functions that reproduce ``alpaca_eval`` 0.6.6
(``weighted_alpaca_eval_gpt4_turbo`` against the ``gpt4_1106_preview``
reference): the judge's prompt, the per-instruction order of the two outputs,
the parsing of the judge's logprobs, the win rate and the length-controlled
win rate.

One pair is judged as alpaca_eval does it, with ``gpt-4-1106-preview`` asked for one token
(``max_tokens=1``, ``temperature=1``, ``logprobs=True``, ``top_logprobs=5``)::

    if model == reference:
        preference = 1.5  # alpaca_eval records a draw without asking the judge
    else:
        swapped = is_swapped(instruction)
        first, second = (model, reference) if swapped else (reference, model)
        reply = judge.invoke(judge_messages(template, instruction, first, second))
        top = reply.response_metadata["logprobs"]["content"][0]["top_logprobs"]
        preference = preference_from_logprobs(top)  # None: alpaca_eval drops the pair
        if preference is not None:
            preference = unswap(preference, swapped)
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

# scikit-learn ships no type information.
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.model_selection import GroupKFold  # type: ignore[import-untyped]

from langchain_moa.eval.data import read_json
from langchain_moa.eval.generation import generate, summarize_generations
from langchain_moa.eval.store import JsonlStore, run_items
from langchain_moa.models import model_label

REFERENCE_OUTPUTS = "gpt4_1106_preview_model_outputs.json"
"""The 805 instructions with the baseline's outputs, relative to ``<data_dir>/alpaca_eval``."""
JUDGE_TEMPLATE = "judge/evaluators_configs_alpaca_eval_clf_gpt4_turbo_alpaca_eval_clf.txt"
"""The judge's chat-ml prompt template, relative to ``<data_dir>/alpaca_eval``."""

SEED = 0
"""The annotators' seed in ``alpaca_eval evaluate``: ``PairwiseAnnotator``'s default, which
it passes to its judges (``SingleAnnotator``'s own default, 123, does not apply there).
The published annotations were made with it."""
BASELINE_ANSWER = "m"
"""The judge's one-token answer when it prefers ``output_1``."""
MODEL_ANSWER = "M"
"""The judge's one-token answer when it prefers ``output_2``."""

# alpaca_eval's scale: 1 when output_1 wins, 2 when output_2 wins (0 is an old draw).
_FIRST_WINS = 1.0
_DRAW = 1.5
_SECOND_WINS = 2.0

_SWITCH_COLUMN = "is_switched_outputs"
# The whole placeholder, as alpaca_eval's make_prompts finds it: no whitespace inside.
_PLACEHOLDER = re.compile(r"\{(\S+?)\}")
_IM_START = "<|im_start|>"
_IM_END = "<|im_end|>"
_ROLES: dict[str, type[BaseMessage]] = {
    "system": SystemMessage,
    "user": HumanMessage,
    "assistant": AIMessage,
}

# Length control (alpaca_eval/metrics/glm_winrate.py).
_C_GRID = np.logspace(-4, 4, 10)  # LogisticRegressionCV's default Cs=10
_GLM_RANDOM_STATE = 123
_CV_FOLDS = 5
_REGULARIZE_TO_BASELINE = 0.2
_EPSILON = 1e-15


def load_reference_outputs(data_dir: Path) -> list[dict[str, Any]]:
    """The 805 AlpacaEval instructions with the GPT-4 Turbo reference outputs.

    Args:
        data_dir: The folder that holds ``alpaca_eval/``.

    Returns:
        Rows with ``instruction``, ``output``, ``generator`` and ``dataset``.

    Raises:
        FileNotFoundError: The file is missing; the message names it.
    """
    rows: list[dict[str, Any]] = read_json(data_dir / "alpaca_eval" / REFERENCE_OUTPUTS)
    return rows


def load_judge_template(data_dir: Path) -> str:
    """The judge's chat-ml prompt template, read as alpaca_eval reads it.

    Args:
        data_dir: The folder that holds ``alpaca_eval/``.

    Raises:
        FileNotFoundError: The file is missing; the message names it.
    """
    path = data_dir / "alpaca_eval" / JUDGE_TEMPLATE
    if not path.is_file():
        msg = f"data file not found: {path}"
        raise FileNotFoundError(msg)
    return path.read_text(encoding="utf-8")


def judge_messages(
    template: str, instruction: str, output_1: str, output_2: str
) -> list[BaseMessage]:
    """The messages alpaca_eval sends to the judge for one pair.

    Each placeholder is replaced once, in the order the template first names them, by
    plain string replacement: braces in the texts need no escaping, and a text that
    contains a later placeholder (``{output_2}`` in an instruction, say) has it filled
    as alpaca_eval does. The chat-ml text is then split as ``prompt_to_chatml`` splits
    it: one message per ``<|im_start|>role`` block, up to the first ``<|im_end|>``,
    stripped.

    Args:
        template: The chat-ml template, e.g. from `load_judge_template`.
        instruction: The instruction both outputs answer.
        output_1: The output shown as model ``m``.
        output_2: The output shown as model ``M``.

    Returns:
        System, user (and assistant) messages; ``system name=x`` blocks keep their name.

    Raises:
        ValueError: The template names another placeholder or one twice, or is not chat-ml.
    """
    fields = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
    placeholders = _PLACEHOLDER.findall(template)
    prompt = template
    for name in dict.fromkeys(placeholders):
        if name not in fields or placeholders.count(name) != 1:
            msg = f"the judge template must name {{{name}}} once, and only {list(fields)}"
            raise ValueError(msg)
        prompt = prompt.replace("{" + name + "}", fields[name], 1)
    return _chatml_to_messages(prompt)


def _chatml_to_messages(prompt: str) -> list[BaseMessage]:
    prompt = prompt.strip()
    if not (prompt.startswith(_IM_START) and prompt.endswith(_IM_END)):
        msg = f"not a chat-ml prompt: {prompt[:40]!r}...{prompt[-40:]!r}"
        raise ValueError(msg)
    messages = []
    for block in prompt.split(_IM_START)[1:]:
        header, _, body = block.partition("\n")
        role = header.strip()
        content = body.split(_IM_END, 1)[0].strip()
        extra: dict[str, str] = {}
        if role.startswith("system") and role != "system":
            # "system name=example_user": few-shot turns, as in OpenAI's chat-ml.
            extra = dict(item.split("=", 1) for item in role.split("system", 1)[1].split())
            role = "system"
        if role not in _ROLES:
            msg = f"unknown chat-ml role {role!r}"
            raise ValueError(msg)
        messages.append(_ROLES[role](content=content, **extra))
    return messages


def is_swapped(instruction: str, *, seed: int = SEED) -> bool:
    """Whether alpaca_eval shows the model's output first (as ``m``) for this instruction.

    alpaca_eval seeds Python's ``random`` with ``"is_switched_outputs" + instruction +
    str(seed)`` and draws ``choices([False, True])``; the same instruction is therefore
    always shown in the same order, whichever model is evaluated.

    Args:
        instruction: The instruction, exactly as in the reference outputs.
        seed: The annotator's seed; `SEED` is what ``alpaca_eval evaluate`` uses.
    """
    # Not for security: a reproducible coin, seeded as alpaca_eval seeds it.
    rng = random.Random(_SWITCH_COLUMN + instruction + str(seed))  # noqa: S311 - see above
    return rng.choices((False, True))[0]


def preference_from_logprobs(top_logprobs: Sequence[Mapping[str, Any]]) -> float | None:
    """The judge's preference from its first token's top logprobs.

    alpaca_eval's ``logprob_parser`` (numerator ``m``, denominators ``m`` and ``M``, not
    binarised): ``2 - p(m)``, with ``p`` normalised over ``m`` and ``M``; a token missing
    from the top logprobs has probability 0. 1 means ``output_1`` is better, 2 ``output_2``.

    Args:
        top_logprobs: ``[{"token": ..., "logprob": ...}, ...]`` as OpenAI returns it in
            ``logprobs.content[0].top_logprobs``.

    Returns:
        The preference in [1, 2], or None when neither token is among the top logprobs
        or the list is malformed: alpaca_eval then gets NaN (or an error) and drops the
        pair from its annotations.
    """
    try:
        found = {
            entry["token"]: float(entry["logprob"])
            for entry in top_logprobs
            if entry["token"] in (BASELINE_ANSWER, MODEL_ANSWER)
        }
    except (KeyError, TypeError, ValueError):
        return None
    if not found:
        return None
    baseline = found.get(BASELINE_ANSWER, -math.inf)
    model = found.get(MODEL_ANSWER, -math.inf)
    highest = max(baseline, model)
    total = highest + math.log(math.exp(baseline - highest) + math.exp(model - highest))
    return 2.0 - math.exp(baseline - total)


def preference_from_text(text: str) -> float | None:
    """The preference from a judge's text answer, for judges without logprobs.

    Args:
        text: The judge's answer.

    Returns:
        1.0 for ``m``, 2.0 for ``M`` (after stripping whitespace), else None.
    """
    return {BASELINE_ANSWER: 1.0, MODEL_ANSWER: 2.0}.get(text.strip())


def unswap(preference: float, swapped: bool) -> float:  # noqa: FBT001 - is_swapped's result
    """The preference in the caller's order: ``3 - x`` when the outputs were swapped.

    Args:
        preference: The judge's preference in the order it was shown the outputs.
        swapped: What `is_swapped` said for the instruction.
    """
    return 3.0 - preference if swapped else preference


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
    continuous = [_DRAW if p == 0 else p for p in values]
    kept = [p for p in continuous if _FIRST_WINS <= p <= _SECOND_WINS]
    win_rate, standard_error = _mean_and_sem(np.array(kept) - 1)
    discrete = [_rounded(p) for p in values if not math.isnan(p)]
    discrete_kept = [p for p in discrete if _FIRST_WINS <= p <= _SECOND_WINS]
    discrete_win_rate, _ = _mean_and_sem(np.array(discrete_kept) - 1)
    return {
        "win_rate": win_rate * 100,
        "standard_error": standard_error * 100,
        "n_wins": sum(p > _DRAW for p in kept),
        "n_wins_base": sum(p < _DRAW for p in kept),
        "n_draws": sum(p == _DRAW for p in continuous),
        "n_total": len(kept),
        "discrete_win_rate": discrete_win_rate * 100,
    }


def _rounded(preference: float) -> float:
    # round() halves to even, as pandas does; a draw stays a draw, and so does 0.
    rounded = 0 if preference == _DRAW else round(preference)
    return _DRAW if rounded == 0 else float(rounded)


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
    ``gpt4_1106_preview_verbose`` and ``_concise``). Hence three formulas:

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
    target = np.where(target == 0, _DRAW, target) - 1
    difficulty = []
    if instruction_difficulty is not None:
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
        for i, c in enumerate(_C_GRID):
            fold_model = _liblinear(c).fit(x[train], y[train], sample_weight=sample_weight[train])
            predicted = np.clip(fold_model.predict_proba(x[held_out])[:, 1], _EPSILON, 1 - _EPSILON)
            p = soft_label[held_out]
            loglik = p * np.log(predicted) + (1 - p) * np.log(1 - predicted)
            losses[i] += -np.mean(loglik * row_weight[held_out])
    best_c = _C_GRID[np.argmin(losses)]
    return _liblinear(best_c).fit(x, y, sample_weight=sample_weight)


def _liblinear(c: float) -> LogisticRegression:
    # l1_ratio=1 is penalty="l1" without scikit-learn 1.8's deprecation warning.
    return LogisticRegression(
        C=c, l1_ratio=1.0, solver="liblinear", fit_intercept=False, random_state=_GLM_RANDOM_STATE
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


def _first_token_top_logprobs(reply: BaseMessage) -> list[dict[str, Any]] | None:
    content = (reply.response_metadata.get("logprobs") or {}).get("content") or []
    return content[0].get("top_logprobs") if content else None


def logprob_judge(judge: BaseChatModel) -> BaseChatModel:
    """``judge`` asking for the top 5 logprobs, where its class can (OpenAI-style)."""
    fields = type(judge).model_fields
    if "logprobs" in fields and "top_logprobs" in fields:
        return judge.model_copy(update={"logprobs": True, "top_logprobs": 5})
    return judge


async def run(
    model: BaseChatModel,
    data_dir: Path,
    out_dir: Path,
    *,
    judge: BaseChatModel,
    limit: int | None = None,
    concurrency: int = 4,
) -> dict[str, Any]:
    """Answer the 805 instructions, judge each pair against the reference, score.

    The judge should be set up as alpaca_eval's: one token at temperature 1; it
    is asked for logprobs where it can give them, and its text answer is used
    where it gives none. Both steps resume. Files in ``out_dir``:
    ``outputs.jsonl`` and ``model_outputs.json`` (alpaca_eval's format),
    ``annotations.jsonl`` and ``annotations.json`` (alpaca_eval's format, so
    ``alpaca_eval`` or ``moa eval score-alpaca`` can score them too).
    """
    references = load_reference_outputs(data_dir)[:limit]
    items = [{"id": index, **row} for index, row in enumerate(references)]
    template = load_judge_template(data_dir)
    generator, judge_id = model_label(model), model_label(judge)
    judge = logprob_judge(judge)

    async def answer(item: dict[str, Any]) -> dict[str, Any]:
        result = await generate(model, [HumanMessage(item["instruction"])])
        return {"id": item["id"], "instruction": item["instruction"], **result}

    outputs = await run_items(
        items, answer, JsonlStore(out_dir / "outputs.jsonl", "id"),
        concurrency=concurrency, name="alpaca_eval answers",
    )  # fmt: skip
    _write_json(
        out_dir / "model_outputs.json",
        [
            {"instruction": o["instruction"], "output": o["output"], "generator": generator,
             "dataset": item["dataset"]}
            for o, item in zip(outputs, items, strict=True)
        ],
    )  # fmt: skip
    by_id = {o["id"]: o["output"] for o in outputs}

    async def annotate(item: dict[str, Any]) -> dict[str, Any]:
        reference, output = item["output"], by_id[item["id"]]
        swapped = is_swapped(item["instruction"])
        preference: float | None = _DRAW
        source, raw = "identical outputs", None
        if output != reference:
            first, second = (output, reference) if swapped else (reference, output)
            reply = await judge.ainvoke(
                judge_messages(template, item["instruction"], first, second)
            )
            top = _first_token_top_logprobs(reply)
            shown, source = preference_from_logprobs(top or []), "logprobs"
            if shown is None:
                shown, source = preference_from_text(reply.text), "text"
            preference = None if shown is None else unswap(shown, swapped)
            raw = {"text": reply.text, "top_logprobs": top}
        return {
            "id": item["id"], "instruction": item["instruction"], "dataset": item["dataset"],
            "output_1": reference, "generator_1": item["generator"],
            "output_2": output, "generator_2": generator,
            "annotator": judge_id, "preference": preference,
            # None: the judge named neither output, and the pair is left out.
            "preference_source": source if preference is not None else None,
            "is_swapped": swapped, "raw_completion": raw,
        }  # fmt: skip

    annotations = await run_items(
        items, annotate, JsonlStore(out_dir / "annotations.jsonl", "id"),
        concurrency=concurrency, name="alpaca_eval judgements",
    )  # fmt: skip
    _write_json(out_dir / "annotations.json", annotations)
    return {
        **score_annotations(annotations),
        "n_unparsed_judgements": sum(a["preference"] is None for a in annotations),
        "judge": judge_id,
        "generation": summarize_generations(outputs),
    }


def _write_json(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(rows), indent=2, ensure_ascii=False), encoding="utf-8")
