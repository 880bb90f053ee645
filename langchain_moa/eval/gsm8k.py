"""GSM8K, judge-free: exact match of the model's final number against the reference's ``#### n``.

The one benchmark here where MoA's gain over its proposers can be measured
without a strong judge.

Two extractions are scored, as lm-evaluation-harness's ``gsm8k`` task does:

* **strict**: the number after the first ``#### `` (GSM8K's own answer format, which
  `INSTRUCTION` asks for; the reference answers are parsed the same way);
* **flexible**: the last number anywhere in the answer.

``accuracy`` is the strict one: it is what the model was asked to produce and what the
harness lists first (``strict-match``), and it does not reward a right number that the model
only happened to write last. ``accuracy_flexible`` is beside it, so that a model that solves
the problems but misses the format is visible as the gap between the two.

Numbers are read the same way in both: a Unicode minus (U+2212 and its variants) is a
minus, ``.5`` is 0.5, thousands may be separated by commas, thin, narrow no-break, no-break
or plain spaces (only in groups of three digits: ``1 000`` is 1000, ``3 4`` is 3 then 4), a
``$`` is dropped, and trailing punctuation (``18.``, ``18!``, ``**18**``) is not part of
the number. A hyphen right after a word or digit (``3-5``) is not a minus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from langchain_moa.costs import Rates
from langchain_moa.eval.benchmark import Benchmark, Generation
from langchain_moa.eval.data import DataFile, load_jsonl
from langchain_moa.eval.generation import generate, summarize_generations
from langchain_moa.eval.stats import mean_interval
from langchain_moa.eval.store import JsonlStore, run_items

TEST_FILE = DataFile(
    "gsm8k/test.jsonl", "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"
)
"""The 1,319 test problems (openai/grade-school-math, MIT); shipped in the package."""
INSTRUCTION = "Solve the problem step by step, then give the final answer as '#### <number>'."
"""Appended to each question so the answer's last line can be found."""

_MINUS = "-\u2212\ufe63\uff0d"
_SEPARATORS = ",\u2009\u202f\u00a0 "
_NUMBER_PATTERN = (
    # A sign only where it cannot be a hyphen or a range's dash ("3-5", "x-2").
    rf"(?:(?<![\w.])(?P<sign>[{_MINUS}]))?\$?"
    # Thousands groups (one separator kind throughout), or plain digits, or neither (".5").
    rf"(?P<digits>\d{{1,3}}(?:(?P<sep>[{_SEPARATORS}])\d{{3}})(?:(?P=sep)\d{{3}})*(?!\d)"
    r"|\d+)?"
    r"(?P<fraction>\.\d+)?"
)
_NUMBER = re.compile(_NUMBER_PATTERN)
_MARKED = re.compile(rf"####[ \t]*(?:\*\*|__)?[ \t]*\$?[ \t]*(?P<number>{_NUMBER_PATTERN})")


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


def _value(match: re.Match[str]) -> str | None:
    digits, fraction = match.group("digits"), match.group("fraction")
    if digits is None and fraction is None:
        return None
    sign = "-" if match.group("sign") else ""
    separator = match.group("sep") or ","
    try:
        value = Decimal(f"{sign}{(digits or '0').replace(separator, '')}{fraction or ''}")
    except InvalidOperation:
        return None
    # normalize() keeps "-0"; zero has no sign.
    return format(value.normalize(), "f") if value else "0"


def extract_strict(text: str) -> str | None:
    """The number after the first ``####`` (GSM8K's own format), None if there is none."""
    for match in _MARKED.finditer(text):
        value = _value(match)
        if value is not None:
            return value
    return None


def extract_flexible(text: str) -> str | None:
    """The last number in the text, None if there is none."""
    values = [_value(match) for match in _NUMBER.finditer(text)]
    found = [value for value in values if value is not None]
    return found[-1] if found else None


def target_number(answer: str) -> str:
    """The reference answer's number after ``####``.

    Raises:
        ValueError: the answer has no ``#### n`` line.
    """
    number = extract_strict(answer)
    if number is None:
        msg = f"GSM8K answer without '#### <number>': {answer[-80:]!r}"
        raise ValueError(msg)
    return number


def score(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with both predictions and whether each matches ``target``.

    Both are extracted from the stored ``output`` where the record lacks them (answers
    files written before the two extractions), so an old run scores the same way.
    """
    output = record["output"]
    strict = record["predicted_strict"] if "predicted_strict" in record else extract_strict(output)
    flexible = (
        record["predicted_flexible"] if "predicted_flexible" in record else extract_flexible(output)
    )
    return {
        **record,
        "predicted_strict": strict,
        "predicted_flexible": flexible,
        "correct_strict": strict == record["target"],
        "correct_flexible": flexible == record["target"],
    }


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Both accuracies over the records, and how many answers had no number for each.

    ``accuracy`` is ``accuracy_strict`` (see the module's note on the headline);
    ``accuracy_ci`` and ``accuracy_flexible_ci`` are bootstrapped 95% intervals over
    problems (see `langchain_moa.eval.stats`), None for no records.
    """
    scored = [score(record) for record in records]
    total = len(scored)
    correct = {kind: sum(r[f"correct_{kind}"] for r in scored) for kind in ("strict", "flexible")}

    def percent(count: int) -> float | None:
        return 100 * count / total if total else None

    return {
        "accuracy": percent(correct["strict"]),
        "accuracy_ci": mean_interval([100.0 * r["correct_strict"] for r in scored]),
        "accuracy_strict": percent(correct["strict"]),
        "accuracy_flexible": percent(correct["flexible"]),
        "accuracy_flexible_ci": mean_interval([100.0 * r["correct_flexible"] for r in scored]),
        "n_correct_strict": correct["strict"],
        "n_correct_flexible": correct["flexible"],
        "n_total": total,
        "n_no_number_strict": sum(r["predicted_strict"] is None for r in scored),
        "n_no_number_flexible": sum(r["predicted_flexible"] is None for r in scored),
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
    as each finishes, with ``predicted_strict``/``predicted_flexible`` and
    ``correct_strict``/``correct_flexible``).
    """
    problems = load_problems(data_dir)[:limit]

    async def answer(problem: dict[str, Any]) -> dict[str, Any]:
        prompt = f"{problem['question']}\n\n{INSTRUCTION}"
        result = await generate(model, [HumanMessage(prompt)])
        return score({**problem, **result})

    records = await run_items(
        problems, answer, JsonlStore(out_dir / "answers.jsonl", "id"),
        concurrency=concurrency, name="gsm8k",
    )  # fmt: skip
    return {**summarize(records), "generation": summarize_generations(records, Rates())}


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
    # The bootstrapped interval of its accuracy.
    requires=("numpy",),
    agreement="final_answer",
)
