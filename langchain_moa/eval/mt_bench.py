"""MT-Bench single-answer grading, as FastChat's ``llm_judge`` does it.

``run`` generates the answers and has a judge grade them; the rest are pure
functions. What is reproduced from FastChat
(``fastchat/llm_judge/common.py``, ``gen_judgment.py``, ``gen_model_answer.py``,
``show_result.py``):

* generation temperature per category, 0.7 for an unknown category;
* the judge prompt per category and turn (``single-v1``, ``single-math-v1`` and
  their ``-multi-turn`` forms), filled with the same fields as ``run_judge_single``;
* the rating regex and its backup, first match wins;
* the averages of ``show_result --mode single``: unparseable ratings dropped,
  the overall score pooled over both turns' judgments.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from langchain_moa.costs import Rates
from langchain_moa.eval.benchmark import Benchmark, Generation, JudgeSettings
from langchain_moa.eval.data import DataFile, load_jsonl
from langchain_moa.eval.generation import generate, summarize_generations
from langchain_moa.eval.stats import pooled_mean_interval
from langchain_moa.eval.store import JsonlStore, run_items
from langchain_moa.stacks import model_label

# FastChat (lm-sys/FastChat, Apache-2.0) at 0e6d3e4; shipped in the package.
QUESTION_FILE = DataFile(
    "mt_bench/question.jsonl", "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"
)
REFERENCE_FILE = DataFile(
    "mt_bench/reference_answer/gpt-4.jsonl",
    "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f",
)
"""FastChat reads the reference answers written by the judge model, GPT-4."""
JUDGE_PROMPTS_FILE = DataFile(
    "mt_bench/judge_prompts.jsonl",
    "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6",
)

TEMPERATURE_BY_CATEGORY: dict[str, float] = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
"""FastChat's ``temperature_config`` for the eight MT-Bench categories (it also
lists Arena-Hard-200's, 0.0, which is not an MT-Bench category)."""

DEFAULT_TEMPERATURE = 0.7
"""``gen_model_answer.py``'s temperature for a category missing from the table."""

MAX_NEW_TOKENS = 1024
"""``gen_model_answer.py``'s default ``--max-new-token``."""

JUDGE_TEMPERATURE = 0.0
JUDGE_MAX_TOKENS = 2048
"""What ``run_judge_single`` asks of an OpenAI judge."""

NEED_REFERENCE = ("math", "reasoning", "coding")
"""FastChat's ``NEED_REF_CATS`` restricted to MT-Bench: these categories are
judged against the reference answers (FastChat also lists Arena-Hard-200)."""

_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
_FASTCHAT_UNPARSEABLE = -1
"""FastChat's score for a judgment without a rating, accepted by `summarize`."""

_TURNS = (1, 2)
_SECOND_TURN = 2
_SHORTUUID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_SHORTUUID_LENGTH = 22


def load_questions(data_dir: Path | None = None) -> list[dict[str, Any]]:
    """The 80 questions, each with ``question_id``, ``category`` and two ``turns``.

    Args:
        data_dir: A data folder that replaces the packaged data (see `langchain_moa.eval.data`).

    Raises:
        FileNotFoundError: ``data_dir`` lacks the question file (the message names it).
    """
    return load_jsonl(QUESTION_FILE, data_dir)


def load_reference_answers(data_dir: Path | None = None) -> dict[int, list[str]]:
    """The reference answers' turns by question id (math, reasoning, coding).

    Raises:
        FileNotFoundError: ``data_dir`` lacks the reference file (the message names it).
    """
    rows = load_jsonl(REFERENCE_FILE, data_dir)
    return {row["question_id"]: list(row["choices"][0]["turns"]) for row in rows}


def load_judge_prompts(data_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """FastChat's judge prompts by name (``single-v1``, ``pair-v2``, ...).

    Raises:
        FileNotFoundError: ``data_dir`` lacks the prompt file (the message names it).
    """
    return {row["name"]: row for row in load_jsonl(JUDGE_PROMPTS_FILE, data_dir)}


def generation_temperature(category: str) -> float:
    """The sampling temperature FastChat generates a category's answers with."""
    return TEMPERATURE_BY_CATEGORY.get(category, DEFAULT_TEMPERATURE)


def question_temperature(question: Mapping[str, Any]) -> float:
    """The temperature a question's turns are answered at: its category's."""
    return generation_temperature(question["category"])


def judge_prompt_name(category: str, turn: int) -> str:
    """The judge prompt ``gen_judgment.py`` uses for a category and turn.

    Raises:
        ValueError: ``turn`` is not 1 or 2.
    """
    _check_turn(turn)
    name = "single-math-v1" if category in NEED_REFERENCE else "single-v1"
    return f"{name}-multi-turn" if turn == _SECOND_TURN else name


def judge_messages(
    question: Mapping[str, Any],
    answer_turns: Sequence[str],
    turn: int,
    judge_prompts: Mapping[str, Mapping[str, Any]],
    reference_turns: Sequence[str] | None = None,
) -> tuple[list[BaseMessage], str]:
    """The messages FastChat's single-answer grading sends to the judge.

    Turn 1 shows the first question and answer; turn 2 shows the whole
    conversation and asks about the second answer. Questions of the
    `NEED_REFERENCE` categories are judged against the reference turns; for the
    others a reference, if given, is not used, as in FastChat.

    Args:
        question: a row of `load_questions`.
        answer_turns: the assistant's answers to the question's turns.
        turn: 1 or 2, the answer being judged.
        judge_prompts: `load_judge_prompts`'s mapping.
        reference_turns: the reference answer's turns
            (`load_reference_answers`), needed for reference categories.

    Returns:
        The system message (omitted when the prompt's is empty, as FastChat's
        OpenAI conversion does) and the filled user message, and the name of
        the judge prompt used.

    Raises:
        ValueError: the turn is not 1 or 2, a turn's text is missing, or a
            reference category comes without reference turns.
    """
    name = judge_prompt_name(question["category"], turn)
    prompt = judge_prompts[name]
    questions = question["turns"]
    _check_length("question turns", questions, turn)
    _check_length("answer turns", answer_turns, turn)

    fields: dict[str, str] = {}
    if question["category"] in NEED_REFERENCE:
        if reference_turns is None:
            msg = (
                f"question {question['question_id']} ({question['category']}) "
                "is judged against a reference answer: pass reference_turns"
            )
            raise ValueError(msg)
        _check_length("reference turns", reference_turns, turn)
        fields["ref_answer_1"] = reference_turns[0]
        if turn == _SECOND_TURN:
            fields["ref_answer_2"] = reference_turns[1]
    if turn == _SECOND_TURN:
        fields |= {
            "question_1": questions[0],
            "question_2": questions[1],
            "answer_1": answer_turns[0],
            "answer_2": answer_turns[1],
        }
    else:
        fields |= {"question": questions[0], "answer": answer_turns[0]}

    messages: list[BaseMessage] = []
    if prompt["system_prompt"]:
        messages.append(SystemMessage(content=prompt["system_prompt"]))
    messages.append(HumanMessage(content=prompt["prompt_template"].format(**fields)))
    return messages, name


def parse_rating(judgment: str) -> float | None:
    """The judge's rating: the first ``[[x]]``, else the first ``[x]``.

    Returns:
        The rating, or None where FastChat records -1 (no rating found).
    """
    match = _RATING.search(judgment) or _RATING_BACKUP.search(judgment)
    return float(match.group(1)) if match else None


def summarize(judgments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """MT-Bench scores as FastChat's ``show_result.py`` computes them.

    Args:
        judgments: each with ``question_id``, ``category``, ``turn`` (1 or 2)
            and ``score`` (None, or FastChat's -1, when unparseable).

    Returns:
        ``overall`` (the mean over every scored judgment of both turns) and
        ``overall_ci``, its bootstrapped 95% interval over questions (see
        `langchain_moa.eval.stats`),
        ``turn_1`` and ``turn_2``, ``per_category`` (both turns pooled), each
        None where nothing was scored; and the counts ``n_judgments``,
        ``n_scored``, ``n_unparseable``, ``n_turn_1``, ``n_turn_2`` and
        ``n_per_category`` (scored judgments).

    Raises:
        ValueError: a judgment's turn is not 1 or 2.
    """
    by_turn: dict[int, list[float]] = {turn: [] for turn in _TURNS}
    by_category: dict[str, list[float]] = {}
    by_question: dict[Any, list[float]] = {}
    unparseable = 0
    for judgment in judgments:
        _check_turn(judgment["turn"])
        scores = by_category.setdefault(judgment["category"], [])
        question = by_question.setdefault(judgment["question_id"], [])
        score = judgment["score"]
        if score is None or score == _FASTCHAT_UNPARSEABLE:
            unparseable += 1
            continue
        scores.append(float(score))
        question.append(float(score))
        by_turn[judgment["turn"]].append(float(score))
    scored = by_turn[1] + by_turn[2]
    return {
        "overall": _mean(scored),
        # A question's two turns are resampled together: they share the question.
        "overall_ci": pooled_mean_interval([s for s in by_question.values() if s]),
        "turn_1": _mean(by_turn[1]),
        "turn_2": _mean(by_turn[2]),
        "per_category": {category: _mean(s) for category, s in by_category.items()},
        "n_judgments": len(judgments),
        "n_scored": len(scored),
        "n_unparseable": unparseable,
        "n_turn_1": len(by_turn[1]),
        "n_turn_2": len(by_turn[2]),
        "n_per_category": {category: len(s) for category, s in by_category.items()},
    }


def answer_record(
    question_id: int,
    model_id: str,
    turns: Sequence[str],
    answer_id: str | None = None,
    tstamp: float | None = None,
) -> dict[str, Any]:
    """A row of FastChat's ``model_answer/<model>.jsonl``.

    Args:
        question_id: the question answered.
        model_id: the answering model's name.
        turns: its answers, one per question turn.
        answer_id: defaults to a fresh 22-character id in shortuuid's alphabet,
            like FastChat's ``shortuuid.uuid()``.
        tstamp: defaults to now (seconds since the epoch).

    Returns:
        ``question_id``, ``answer_id``, ``model_id``,
        ``choices=[{"index": 0, "turns": [...]}]`` and ``tstamp``.
    """
    return {
        "question_id": question_id,
        "answer_id": answer_id if answer_id is not None else _short_uuid(),
        "model_id": model_id,
        "choices": [{"index": 0, "turns": list(turns)}],
        "tstamp": tstamp if tstamp is not None else time.time(),
    }


def _check_turn(turn: int) -> None:
    if turn not in _TURNS:
        msg = f"MT-Bench turn must be 1 or 2, got {turn!r}"
        raise ValueError(msg)


def _check_length(what: str, turns: Sequence[str], turn: int) -> None:
    if len(turns) < turn:
        msg = f"turn {turn} needs {turn} {what}, got {len(turns)}"
        raise ValueError(msg)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _short_uuid() -> str:
    number = uuid.uuid4().int
    digits = []
    for _ in range(_SHORTUUID_LENGTH):
        number, digit = divmod(number, len(_SHORTUUID_ALPHABET))
        digits.append(_SHORTUUID_ALPHABET[digit])
    return "".join(digits)


async def run(
    model: BaseChatModel,
    data_dir: Path | None,
    out_dir: Path,
    *,
    judge: BaseChatModel,
    limit: int | None = None,
    concurrency: int = 4,
) -> dict[str, Any]:
    """Answer both turns of each question, then grade each turn with ``judge``.

    Answers use FastChat's per-category temperature (for ``ChatMoA`` it reaches
    the aggregator; proposers keep their own sampling). The judge should be set
    up as FastChat's: temperature 0, up to 2048 tokens. Both steps resume.

    Files in ``out_dir``: ``model_answer.jsonl`` (FastChat's format, plus each
    call's usage) and ``judgments.jsonl``.
    """
    questions = load_questions(data_dir)[:limit]
    references = load_reference_answers(data_dir)
    judge_prompts = load_judge_prompts(data_dir)
    model_id, judge_id = model_label(model), model_label(judge)

    async def answer(question: dict[str, Any]) -> dict[str, Any]:
        conversation: list[BaseMessage] = []
        calls = []
        for text in question["turns"]:
            conversation.append(HumanMessage(text))
            temperature = question_temperature(question)
            calls.append(await generate(model, conversation, temperature=temperature))
            conversation.append(AIMessage(calls[-1]["output"]))
        turns = [call["output"] for call in calls]
        return {**answer_record(question["question_id"], model_id, turns), "generation": calls}

    answers = await run_items(
        questions, answer, JsonlStore(out_dir / "model_answer.jsonl", "question_id"),
        concurrency=concurrency, name="mt-bench answers",
    )  # fmt: skip
    turns = {a["question_id"]: a["choices"][0]["turns"] for a in answers}

    async def grade(item: dict[str, Any]) -> dict[str, Any]:
        question, turn = item["question"], item["turn"]
        reference = references.get(question["question_id"])
        needs_reference = question["category"] in NEED_REFERENCE
        messages, prompt_name = judge_messages(
            question, turns[question["question_id"]], turn, judge_prompts,
            reference if needs_reference else None,
        )  # fmt: skip
        judgment = (await judge.ainvoke(messages)).text
        return {
            "key": item["key"],
            "question_id": question["question_id"],
            "category": question["category"],
            "turn": turn,
            "model": model_id,
            "judge": [judge_id, prompt_name],
            "user_prompt": messages[-1].text,
            "judgment": judgment,
            # None, not a number, when the judge gave no [[rating]].
            "score": parse_rating(judgment),
            "tstamp": time.time(),
        }

    items = [
        {"key": f"{q['question_id']}-{turn}", "question": q, "turn": turn}
        for q in questions
        for turn in _TURNS
    ]
    judgments = await run_items(
        items, grade, JsonlStore(out_dir / "judgments.jsonl", "key"),
        concurrency=concurrency, name="mt-bench judgments",
    )  # fmt: skip
    calls = [call for a in answers for call in a["generation"]]
    return {
        **summarize(judgments),
        "judge": judge_id,
        "generation": summarize_generations(calls, Rates()),
    }


BENCHMARK = Benchmark(
    name="mt-bench",
    folder="mt_bench",
    title="MT-Bench",
    files=(QUESTION_FILE, REFERENCE_FILE, JUDGE_PROMPTS_FILE),
    run=run,
    headline="overall",
    generation=Generation(max_tokens=MAX_NEW_TOKENS, item_temperature=question_temperature),
    judge=JudgeSettings(temperature=JUDGE_TEMPERATURE, max_tokens=JUDGE_MAX_TOKENS),
    columns=(("MT-Bench", "overall"),),
    # The bootstrapped interval of its score.
    requires=("numpy",),
)
