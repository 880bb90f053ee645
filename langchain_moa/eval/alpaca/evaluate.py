"""AlpacaEval 2.0 for any chat model: answers, judgements against the reference, scores."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from langchain_moa.costs import Rates
from langchain_moa.eval.alpaca import hub
from langchain_moa.eval.alpaca.judge import (
    DRAW,
    JUDGE_CONFIG,
    JUDGE_MAX_TOKENS,
    JUDGE_TEMPERATURE,
    JUDGE_TEMPLATE,
    first_token_top_logprobs,
    is_swapped,
    judge_messages,
    load_judge_template,
    logprob_judge,
    preference_from_logprobs,
    preference_from_text,
    unswap,
)
from langchain_moa.eval.benchmark import Benchmark, Generation, JudgeSettings
from langchain_moa.eval.data import DataFile, load_json, read_json
from langchain_moa.eval.extras import MissingExtraError, require
from langchain_moa.eval.generation import generate, summarize_generations
from langchain_moa.eval.store import JsonlStore, run_items, write_atomic
from langchain_moa.stacks import model_label

LEADERBOARD_FORMULA = "length_controlled_v1"
"""The LC win rate of alpaca_eval's leaderboard."""

REFERENCE_OUTPUTS = DataFile(
    "alpaca_eval/gpt4_1106_preview_model_outputs.json",
    "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4",
)
"""The 805 instructions with the baseline's outputs (tatsu-lab/alpaca_eval, CC BY-NC 4.0);
shipped with its licence."""


def score(annotations: Sequence[Mapping[str, Any]], data_dir: Path | None = None) -> dict[str, Any]:
    """`score_annotations` with the LC win rate of the leaderboard where it can be had.

    ``length_controlled_v1`` when alpaca_eval's hub files are in the Hugging Face cache or
    can be downloaded, and every annotated instruction is one of the 805; otherwise
    ``length_controlled_minimal``, said in one line (see `langchain_moa.eval.alpaca.hub`).

    Raises:
        MissingExtraError: numpy or scikit-learn is not installed.
    """
    instructions = [row["instruction"] for row in load_reference_outputs(data_dir)]
    return score_with_files(annotations, hub.fetch_or_say(instructions))


def score_with_files(
    annotations: Sequence[Mapping[str, Any]], files: hub.LengthControlFiles | None
) -> dict[str, Any]:
    """`score_annotations` with the difficulty and gamed baselines of ``files``.

    ``length_controlled_v1`` with both, ``length_controlled_noreg`` with the difficulty
    alone, ``length_controlled_minimal`` without ``files`` or when an annotated
    instruction has no difficulty there (said in one line).

    Raises:
        MissingExtraError: numpy or scikit-learn is not installed.
    """
    require(*BENCHMARK.requires, purpose="AlpacaEval's metrics")
    # Imported here: moa starts without the eval extra.
    from langchain_moa.eval.alpaca.metrics import score_annotations  # noqa: PLC0415

    difficulty, gamed, note = hub.length_control_inputs(annotations, files)
    if note is not None:
        hub.say(note)
    return score_annotations(annotations, difficulty, gamed_baselines=gamed)


def rescore(out_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """A saved run's metrics, its LC win rate ``length_controlled_v1`` where it can be had.

    A run scored without alpaca_eval's hub files (offline, a first run) saved
    ``length_controlled_minimal``; once the files are in the Hugging Face cache or can be
    downloaded, the report recomputes the LC fields from the run's ``annotations.json``.
    Otherwise, and without the ``eval`` extra, the metrics are returned as saved.
    """
    annotations_file = out_dir / "annotations.json"
    if metrics.get("formula") == LEADERBOARD_FORMULA or not annotations_file.is_file():
        return metrics
    try:
        require(*BENCHMARK.requires, purpose="AlpacaEval's metrics")
    except MissingExtraError:
        return metrics
    rescored = score(read_json(annotations_file))
    if rescored["formula"] != LEADERBOARD_FORMULA:
        return metrics
    lc_fields = ("length_controlled_winrate", "lc_standard_error", "formula")
    return {**metrics, **{field: rescored[field] for field in lc_fields}}


def load_reference_outputs(data_dir: Path | None = None) -> list[dict[str, Any]]:
    """The 805 AlpacaEval instructions with the GPT-4 Turbo reference outputs.

    Args:
        data_dir: A data folder that replaces the packaged data (see `langchain_moa.eval.data`).

    Returns:
        Rows with ``instruction``, ``output``, ``generator`` and ``dataset``.

    Raises:
        FileNotFoundError: ``data_dir`` lacks the file; the message names it.
    """
    rows: list[dict[str, Any]] = load_json(REFERENCE_OUTPUTS, data_dir)
    return rows


async def run(
    model: BaseChatModel,
    data_dir: Path | None,
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

    Raises:
        MissingExtraError: numpy or scikit-learn (for the scores) is not installed; said
            before any item runs.
    """
    require(*BENCHMARK.requires, purpose="AlpacaEval")
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
        preference: float | None = DRAW
        source, raw = "identical outputs", None
        if output != reference:
            first, second = (output, reference) if swapped else (reference, output)
            reply = await judge.ainvoke(
                judge_messages(template, item["instruction"], first, second)
            )
            top = first_token_top_logprobs(reply)
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
        **score(annotations, data_dir),
        "n_unparsed_judgements": sum(a["preference"] is None for a in annotations),
        "judge": judge_id,
        "generation": summarize_generations(outputs, Rates()),
    }


def _write_json(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    # Derived from the JSONL records, rewritten whole by every run: a kill leaves no half file.
    write_atomic(path, json.dumps(list(rows), indent=2, ensure_ascii=False))


BENCHMARK = Benchmark(
    name="alpaca",
    folder="alpaca_eval",
    title="AlpacaEval 2.0",
    files=(REFERENCE_OUTPUTS, JUDGE_TEMPLATE, JUDGE_CONFIG),
    run=run,
    headline="length_controlled_winrate",
    generation=Generation(max_tokens=2048),
    # One token; its logprobs carry the preference.
    judge=JudgeSettings(temperature=JUDGE_TEMPERATURE, max_tokens=JUDGE_MAX_TOKENS),
    columns=(
        # Named by the runs' formula: length_controlled_v1 is the leaderboard's LC.
        ("AlpacaEval {formula}", "length_controlled_winrate"),
        ("AlpacaEval win", "win_rate"),
        ("avg length", "avg_length"),
    ),
    requires=("numpy", "sklearn"),
    rescore=rescore,
)
