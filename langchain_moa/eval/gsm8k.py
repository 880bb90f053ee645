"""GSM8K, judge-free: exact match of the final number against ``#### n``.

The one benchmark here where MoA's gain over its proposers can be measured
without a strong judge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from langchain_moa.eval.benchmark import Benchmark, Generation
from langchain_moa.eval.data import DataFile, load_jsonl
from langchain_moa.eval.generation import generate, summarize_generations
from langchain_moa.eval.store import JsonlStore, run_items

TEST_FILE = DataFile(
    "gsm8k/test.jsonl", "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"
)
"""The 1,319 test problems (openai/grade-school-math, MIT); shipped in the package."""
INSTRUCTION = "Solve the problem step by step, then give the final answer as '#### <number>'."
"""Appended to each question so the answer's last line can be found."""

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_MARKED = re.compile(r"####\s*(-?\$?\d[\d,]*(?:\.\d+)?)")


def load_problems(data_dir: Path | None = None) -> list[dict[str, Any]]:
    """The test problems, each with ``id`` (its line number) and ``target``.

    Args:
        data_dir: A data folder that replaces the packaged data (see `langchain_moa.eval.data`).

    Raises:
        FileNotFoundError: ``data_dir`` lacks the file (the message names it).
    """
    rows = load_jsonl(TEST_FILE, data_dir)
    return [
        {"id": index, "question": row["question"], "target": target_number(row["answer"])}
        for index, row in enumerate(rows)
    ]


def _normal(number: str) -> str | None:
    try:
        value = Decimal(number.replace(",", "").replace("$", ""))
    except InvalidOperation:
        return None
    return format(value.normalize(), "f")


def target_number(answer: str) -> str:
    """The reference answer's number after ``####``.

    Raises:
        ValueError: the answer has no ``#### n`` line.
    """
    match = _MARKED.search(answer)
    number = _normal(match.group(1)) if match else None
    if number is None:
        msg = f"GSM8K answer without '#### <number>': {answer[-80:]!r}"
        raise ValueError(msg)
    return number


def extract_answer(text: str) -> str | None:
    """The model's final number: after its last ``####``, else its last number."""
    marked = _MARKED.findall(text)
    numbers = marked or _NUMBER.findall(text)
    return _normal(numbers[-1]) if numbers else None


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy over scored records, and how many answers had no number."""
    correct = sum(bool(r["correct"]) for r in records)
    return {
        "accuracy": 100 * correct / len(records) if records else None,
        "n_correct": correct,
        "n_total": len(records),
        "n_no_number": sum(r["predicted"] is None for r in records),
    }


async def run(
    model: BaseChatModel,
    data_dir: Path | None,
    out_dir: Path,
    *,
    limit: int | None = None,
    concurrency: int = 4,
) -> dict[str, Any]:
    """Answer the problems (resumably) and score them.

    Files in ``out_dir``: ``answers.jsonl`` (one record per problem, appended
    as each finishes).
    """
    problems = load_problems(data_dir)[:limit]

    async def answer(problem: dict[str, Any]) -> dict[str, Any]:
        prompt = f"{problem['question']}\n\n{INSTRUCTION}"
        result = await generate(model, [HumanMessage(prompt)])
        predicted = extract_answer(result["output"])
        correct = predicted == problem["target"]
        return {**problem, **result, "predicted": predicted, "correct": correct}

    records = await run_items(
        problems, answer, JsonlStore(out_dir / "answers.jsonl", "id"),
        concurrency=concurrency, name="gsm8k",
    )  # fmt: skip
    return {**summarize(records), "generation": summarize_generations(records)}


BENCHMARK = Benchmark(
    name="gsm8k",
    folder="gsm8k",
    title="GSM8K",
    files=(TEST_FILE,),
    run=run,
    headline="accuracy",
    # Not in the paper: the reference code's AlpacaEval length.
    generation=Generation(max_tokens=2048),
    columns=(("GSM8K acc", "accuracy"),),
)
