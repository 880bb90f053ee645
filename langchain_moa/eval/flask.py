"""FLASK fine-grained skill scoring, as FLASK's ``gpt_review`` does it.

``run`` generates the responses and has a reviewer score them; the rest are
pure functions and one chart. What is reproduced
from FLASK (``gpt_review/gpt4_eval.py``, ``aggregate_skill.py``, and the MoA
repository's copy, which reads this evaluation set's ``instruction`` and
``skill`` fields):

* the reviewer prompt with the reference answer (prompt 2, the one MoA used),
  with only the instance's 3 skills' rubrics inserted, formatted as FLASK does;
* scores read from the reply's last ``{...}``, keys compared without case or
  underscores, 'N/A' (also 'na', 'not applicable') meaning no score;
* per-skill averages over every score given, N/A left out.
"""

from __future__ import annotations

import ast
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from langchain_moa.costs import Rates
from langchain_moa.eval.benchmark import Benchmark, Generation, JudgeSettings, Subset
from langchain_moa.eval.data import DataFile, load_json, load_jsonl
from langchain_moa.eval.extras import require
from langchain_moa.eval.generation import generate, summarize_generations
from langchain_moa.eval.stats import bootstrap_interval
from langchain_moa.eval.store import JsonlStore, run_items, write_atomic
from langchain_moa.stacks import model_label

SOURCE = "https://raw.githubusercontent.com/kaistAI/FLASK/3b4e22bc34aa9dc15ea0c51be3cbf5f3c8b1b5e5"
"""kaistAI/FLASK at its latest commit. The repository has no licence, so nothing of it ships
in the package: each file is downloaded on first use and checked against its SHA-256."""

EVALUATION_FILE = DataFile(
    "flask/flask_evaluation.jsonl",
    "791950bf1f159b048eba8fee205eba606926c25467a9a31e6f9b6affc2e3e13d",
    f"{SOURCE}/evaluation_set/flask_evaluation.jsonl",
)
HARD_EVALUATION_FILE = DataFile(
    "flask/flask_hard_evaluation.jsonl",
    "9830d65b2a137b9184039850c748f52dde369377a0ae06c00ccb6d464d5ebb48",
    f"{SOURCE}/evaluation_set/flask_hard_evaluation.jsonl",
)
SKILLSET_FILE = DataFile(
    "flask/skillset_description.json",
    "78f03c29f5a6510b76b8a765cb539c302d69898b7e4d7c68372c9cc2427e595e",
    f"{SOURCE}/metadata_annotation/skillset/src/skillset_description.json",
)
PROMPT_FILE = DataFile(
    "flask/prompt.jsonl",
    "64836bb1eb6940e7ddbbbf0ea66265191bfd49476036ca15fc2660bbfa326134",
    f"{SOURCE}/gpt_review/src/prompt.jsonl",
)
REVIEWER_FILE = DataFile(
    "flask/reviewer.jsonl",
    "af5b23bfb63125763ad39415cad7bd021473df57a32a11041d3f988e8335104e",
    f"{SOURCE}/gpt_review/src/reviewer.jsonl",
)

HARD = "hard"
"""The subset of `HARD_EVALUATION_FILE`'s instances (``--subset hard``)."""

REFERENCE_PROMPT_ID = 2
"""The reviewer prompt with the reference ("Ground truth") answer."""

SKILLS = (
    "Logical Robustness",
    "Logical Correctness",
    "Logical Efficiency",
    "Commonsense Understanding",
    "Factuality",
    "Metacognition",
    "Insightfulness",
    "Completeness",
    "Comprehension",
    "Conciseness",
    "Readability",
    "Harmlessness",
)
"""The 12 skills, in ``skillset_description.json``'s order."""

JUDGE_TEMPERATURE = 0.0
"""The temperature ``gpt4_eval.py`` means to review at ("for reproducibility");
``reviewer.jsonl`` records 0.2 (`reviewer_settings`)."""
JUDGE_MAX_TOKENS = 1024
"""What ``gpt4_eval.py`` asks of the reviewer, as ``reviewer.jsonl`` records."""

_BRACES = re.compile(r"\{[^}]+\}")
"""FLASK's pattern: no nesting, so text with a stray '{' before a dict spoils it."""
_SCORE_LEVELS = ("1", "2", "3", "4", "5")
_MAX_SCORE = 5


def load_instances(data_dir: Path | None = None, *, hard: bool = False) -> list[dict[str, Any]]:
    """The evaluation instances (1,740, or the 89 hard ones), ``skill`` as a list.

    Each row keeps FLASK's fields: ``idx``, ``instruction``, ``answer`` (the
    reference), ``task``, ``skill``, ``domain``, ``difficulty``, ...

    Args:
        data_dir: A data folder that replaces the downloaded data (see
            `langchain_moa.eval.data`).
        hard: The hard subset instead.

    Raises:
        FileNotFoundError: ``data_dir`` lacks the evaluation file (the message names it).
        DownloadError: The file could not be downloaded.
    """
    rows = load_jsonl(HARD_EVALUATION_FILE if hard else EVALUATION_FILE, data_dir)
    return [{**row, "skill": _skill_list(row["skill"])} for row in rows]


def load_skills(data_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """The skill descriptions (``Skill``, ``Criteria``, ``Scoring``) by name.

    Raises:
        FileNotFoundError: ``data_dir`` lacks the skillset file (the message names it).
        DownloadError: The file could not be downloaded.
    """
    return {skill["Skill"]: skill for skill in load_json(SKILLSET_FILE, data_dir)}


def load_reviewer_prompt(
    data_dir: Path | None = None, prompt_id: int = REFERENCE_PROMPT_ID
) -> dict[str, Any]:
    """A reviewer prompt: ``system_prompt``, ``prompt_template``, ``defaults``.

    Raises:
        FileNotFoundError: ``data_dir`` lacks the prompt file (the message names it).
        DownloadError: The file could not be downloaded.
        ValueError: no prompt has that id.
    """
    return _row_with_prompt_id(PROMPT_FILE, data_dir, prompt_id)


def reviewer_settings(
    data_dir: Path | None = None, prompt_id: int = REFERENCE_PROMPT_ID
) -> dict[str, Any]:
    """The reviewer's ``temperature`` and ``max_tokens`` recorded for a prompt.

    These are ``reviewer.jsonl``'s metadata (0.2 and 1024 for both prompts);
    ``gpt4_eval.py`` itself asks for `JUDGE_TEMPERATURE` and 1024 tokens.

    Raises:
        FileNotFoundError: ``data_dir`` lacks the reviewer file (the message names it).
        DownloadError: The file could not be downloaded.
        ValueError: no reviewer uses that prompt.
    """
    return dict(_row_with_prompt_id(REVIEWER_FILE, data_dir, prompt_id)["metadata"])


def skill_rubrics(labels: Sequence[str], skills: Mapping[str, Mapping[str, Any]]) -> str:
    """The rubric text FLASK inserts for an instance's skills, in their order.

    Each label takes the first skill (in ``skills``' order) whose name contains
    it, as FLASK matches; each block is a blank line, ``name: criteria``, the
    five ``Score n:`` lines, and two newlines.

    Raises:
        ValueError: a label names no skill (FLASK would silently leave its
            rubric out).
    """
    blocks = []
    for label in labels:
        skill = next((s for s in skills.values() if label in s["Skill"]), None)
        if skill is None:
            msg = f"unknown FLASK skill {label!r}"
            raise ValueError(msg)
        scores = "".join(f"\nScore {level}: {skill['Scoring'][level]}" for level in _SCORE_LEVELS)
        blocks.append(f"\n{skill['Skill']}: {skill['Criteria']}{scores}\n\n")
    return "".join(blocks)


def review_messages(
    instance: Mapping[str, Any],
    response: str,
    skills: Mapping[str, Mapping[str, Any]],
    prompt: Mapping[str, Any],
) -> list[BaseMessage]:
    """The system and user messages FLASK's ``gpt4_eval.py`` sends the reviewer.

    Args:
        instance: a row of `load_instances`.
        response: the reviewed model's response to its instruction.
        skills: `load_skills`'s mapping.
        prompt: `load_reviewer_prompt`'s row.
    """
    user = prompt["prompt_template"].format(
        question=instance["instruction"],
        response=response,
        skills=skill_rubrics(_skill_list(instance["skill"]), skills),
        num=3,
        sample_answer=instance["answer"],
        **prompt["defaults"],
    )
    return [SystemMessage(content=prompt["system_prompt"]), HumanMessage(content=user)]


def extract_score_dict(review: str) -> dict[str, Any] | None:
    """The reply's last ``{...}`` as a dict, keys lower-cased, ``_`` as spaces.

    Python and JSON syntax, single or double quotes, are accepted (FLASK
    lower-cases the text and tries Python's only, so it drops a dict with
    ``None``, ``True`` or ``null``; here those read as no score).

    Returns:
        None where the reply has no ``{...}`` or the last one is not a dict.
    """
    found = _BRACES.findall(review)
    if not found:
        return None
    # FLASK drops newlines so that a dict wrapped over lines inside a string parses.
    text = found[-1].replace("\n", "")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
    if not isinstance(value, dict):
        return None
    return {_normal_key(str(key)): score for key, score in value.items()}


def parse_scores(review: str, skills: Sequence[str]) -> dict[str, float | None]:
    """Each skill's score in the reviewer's reply.

    A judge key matches a skill ignoring case and underscores, or by the word
    FLASK's aggregation keys on (the second word of 'logical ...' skills, the
    first word otherwise), so ``correctness`` counts as Logical Correctness.

    Returns:
        ``{skill: score}`` for the given skills; None for a skill that is N/A,
        missing, or not a number, and for all of them where the reply has no
        readable dict.
    """
    scores = extract_score_dict(review) or {}
    parsed: dict[str, float | None] = {}
    for skill in skills:
        key = _normal_key(skill)
        if key not in scores:
            key = next((k for k in scores if _short_key(k) == _short_key(key)), key)
        parsed[skill] = _score_value(scores.get(key))
    return parsed


def summarize(reviews: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-skill averages over reviews, as FLASK's ``aggregate_skill.py``.

    Args:
        reviews: each with the instance's ``skills`` (or its ``skill`` field)
            and ``scores`` (`parse_scores`'s dict); optionally ``parsed``, False
            when the reply had no readable dict.

    Returns:
        ``per_skill`` (all 12 skills in `SKILLS` order, None for a skill never
        scored), ``average`` (the mean of the skills' averages, None for none) and
        ``average_ci`` (its bootstrapped 95% interval over reviews, see
        `langchain_moa.eval.stats`), ``n_scored`` and ``n_unscored`` per skill (scores given, and
        N/A or missing ones), ``n_reviews``, and ``n_unparseable``: reviews
        marked ``parsed: False``, or without ``parsed`` and with no score at all.

    Raises:
        ValueError: a review names a skill not in `SKILLS`.
    """
    given: dict[str, list[float]] = {skill: [] for skill in SKILLS}
    unscored = dict.fromkeys(SKILLS, 0)
    unparseable = 0
    for review in reviews:
        labels = _skill_list(review["skills"] if "skills" in review else review["skill"])
        scores = [review["scores"].get(label) for label in labels]
        parsed = review.get("parsed", any(score is not None for score in scores))
        unparseable += not parsed
        for label, score in zip(labels, scores, strict=True):
            if label not in given:
                msg = f"unknown FLASK skill {label!r}"
                raise ValueError(msg)
            if score is None:
                unscored[label] += 1
            else:
                given[label].append(float(score))
    per_skill = {s: sum(v) / len(v) if v else None for s, v in given.items()}
    # Each review's scores travel together when reviews are resampled.
    scored = [
        [(label, float(score)) for label, score in review["scores"].items() if score is not None]
        for review in reviews
    ]
    return {
        "per_skill": per_skill,
        "average": _average(per_skill),
        "average_ci": bootstrap_interval(scored, _average_of) if any(scored) else None,
        "n_scored": {skill: len(values) for skill, values in given.items()},
        "n_unscored": unscored,
        "n_reviews": len(reviews),
        "n_unparseable": unparseable,
    }


def _average(per_skill: Mapping[str, float | None]) -> float | None:
    scored = [value for value in per_skill.values() if value is not None]
    return sum(scored) / len(scored) if scored else None


def _average_of(reviews: Sequence[Sequence[tuple[str, float]]]) -> float | None:
    given: dict[str, list[float]] = {}
    for scores in reviews:
        for label, score in scores:
            given.setdefault(label, []).append(score)
    return _average({label: sum(v) / len(v) for label, v in given.items()})


def radar_chart(per_skill: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """Draw the MoA paper's FLASK radar chart: one polygon per model, 0 to 5.

    Args:
        per_skill: model name -> {skill: average score}; a skill left out (or
            None) leaves a gap in that model's polygon.
        path: the PNG to write (its folder is created).

    Returns:
        ``path``.

    Raises:
        ValueError: no models, or a skill not in `SKILLS`.
        MissingExtraError: matplotlib is not installed.
    """
    require("matplotlib", purpose="the FLASK radar chart")
    # Imported here: moa starts without the eval extra.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    if not per_skill:
        msg = "radar_chart needs at least one model"
        raise ValueError(msg)
    for scores in per_skill.values():
        unknown = set(scores) - set(SKILLS)
        if unknown:
            msg = f"unknown FLASK skills: {sorted(unknown)}"
            raise ValueError(msg)

    angles = [2 * math.pi * i / len(SKILLS) for i in range(len(SKILLS))]
    closed = [*angles, angles[0]]
    # A bare Figure on the Agg canvas: no pyplot, so no global backend switch.
    figure = Figure(figsize=(8, 8))
    FigureCanvasAgg(figure)
    axes: Any = figure.add_subplot(projection="polar")
    axes.set_theta_offset(math.pi / 2)
    axes.set_theta_direction(-1)
    for model, scores in per_skill.items():
        values = [_plot_value(scores.get(skill)) for skill in SKILLS]
        # Markers keep a lone score visible between two gaps.
        (line,) = axes.plot(
            closed, [*values, values[0]], linewidth=1.5, marker="o", markersize=3, label=model
        )
        axes.fill(closed, [*values, values[0]], color=line.get_color(), alpha=0.08)
    axes.set_xticks(angles)
    axes.set_xticklabels([skill.replace(" ", "\n") for skill in SKILLS])
    axes.set_ylim(0, _MAX_SCORE)
    axes.set_yticks(range(1, _MAX_SCORE + 1))
    axes.set_rlabel_position(180 / len(SKILLS))
    axes.legend(loc="upper right", bbox_to_anchor=(1.25, 1.1))
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=150, bbox_inches="tight")
    # Whole or not at all: a kill mid-write leaves no broken PNG (a rerun draws it again).
    return write_atomic(path, image.getvalue())


def report_section(runs: Mapping[str, Mapping[str, Any]], folder: Path) -> str:
    """The report's FLASK part: per-skill averages, a row per run, and the radar chart.

    Args:
        runs: ``{run: FLASK metrics}``.
        folder: Where the chart is written (``flask_radar.png``).
    """
    scored = {run: metrics["per_skill"] for run, metrics in runs.items()}
    if not scored:
        return ""
    skills = list(next(iter(scored.values())))
    lines = ["| run | " + " | ".join(skills) + " |", "|" + "---|" * (len(skills) + 1)]
    for run, per_skill in scored.items():
        cells = [run, *(_report_cell(per_skill.get(s)) for s in skills)]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\nFLASK per skill:\n" + "\n".join(lines) + "\n"
    plotted = {
        run: {skill: v for skill, v in per_skill.items() if v is not None}
        for run, per_skill in scored.items()
    }
    plotted = {run: scores for run, scores in plotted.items() if scores}
    if plotted:
        text += f"\nplot: {radar_chart(plotted, folder / 'flask_radar.png')}\n"
    return text


def _report_cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _row_with_prompt_id(file: DataFile, data_dir: Path | None, prompt_id: int) -> dict[str, Any]:
    for row in load_jsonl(file, data_dir):
        if row["prompt_id"] == prompt_id:
            return row
    msg = f"no row with prompt_id {prompt_id} in {file.path}"
    raise ValueError(msg)


def _skill_list(skill: str | Sequence[str]) -> list[str]:
    # The upstream files hold lists; older exports wrote them as Python list strings.
    if isinstance(skill, str):
        return [str(item) for item in ast.literal_eval(skill)]
    return list(skill)


def _normal_key(key: str) -> str:
    return " ".join(key.replace("_", " ").lower().split())


def _short_key(key: str) -> str:
    words = key.split()
    if not words:
        return ""
    if "logical" in key and len(words) > 1:
        return words[1]
    return words[0]


def _score_value(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        # 'N/A', 'na', 'not applicable' and any other non-number: no score, as
        # aggregate_skill.py skips what float() rejects.
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _plot_value(score: float | None) -> float:
    return math.nan if score is None else float(score)


async def run(
    model: BaseChatModel,
    data_dir: Path | None,
    out_dir: Path,
    *,
    judge: BaseChatModel,
    limit: int | None = None,
    concurrency: int = 4,
    subset: str | None = None,
) -> dict[str, Any]:
    """Answer the instances, have ``judge`` review each on its 3 skills, average.

    The judge should be set up as FLASK intends: temperature `JUDGE_TEMPERATURE`,
    up to 1024 tokens. Both steps resume. Files in ``out_dir``:
    ``answers.jsonl``, ``reviews.jsonl`` and ``flask_radar.png``.

    Args:
        model: The model under evaluation.
        data_dir: A data folder that replaces the downloaded data.
        out_dir: Where the records go; a subset's should not be the whole set's, since
            records are resumed by ``idx`` (the CLI keeps them apart).
        judge: The reviewer.
        limit: Only the first N instances.
        concurrency: Items in flight at once.
        subset: ``"hard"``: the 89 hard instances; None: all 1,740.

    Raises:
        MissingExtraError: matplotlib (for the chart) is not installed; said before any
            item runs.
        ValueError: An unknown subset.
    """
    require(*BENCHMARK.requires, purpose="FLASK")
    hard = subset is not None and BENCHMARK.subset(subset).name == HARD
    instances = load_instances(data_dir, hard=hard)[:limit]
    skills = load_skills(data_dir)
    prompt = load_reviewer_prompt(data_dir)
    model_id, judge_id = model_label(model), model_label(judge)

    async def answer(instance: dict[str, Any]) -> dict[str, Any]:
        result = await generate(model, [HumanMessage(instance["instruction"])])
        return {"idx": instance["idx"], **result}

    answers = await run_items(
        instances, answer, JsonlStore(out_dir / "answers.jsonl", "idx"),
        concurrency=concurrency, name="flask answers",
    )  # fmt: skip
    outputs = {a["idx"]: a["output"] for a in answers}

    async def review(instance: dict[str, Any]) -> dict[str, Any]:
        messages = review_messages(instance, outputs[instance["idx"]], skills, prompt)
        text = (await judge.ainvoke(messages)).text
        labels = _skill_list(instance["skill"])
        return {
            "idx": instance["idx"],
            "skills": labels,
            "review": text,
            "scores": parse_scores(text, labels),
            "parsed": extract_score_dict(text) is not None,
            "judge": judge_id,
        }

    reviews = await run_items(
        instances, review, JsonlStore(out_dir / "reviews.jsonl", "idx"),
        concurrency=concurrency, name="flask reviews",
    )  # fmt: skip
    summary = summarize(reviews)
    scored = {s: v for s, v in summary["per_skill"].items() if v is not None}
    chart = radar_chart({model_id: scored}, out_dir / "flask_radar.png") if scored else None
    return {
        **summary,
        "subset": subset,
        "judge": judge_id,
        "radar_chart": str(chart) if chart else None,
        "generation": summarize_generations(answers, Rates()),
    }


BENCHMARK = Benchmark(
    name="flask",
    folder="flask",
    title="FLASK",
    # reviewer.jsonl's settings are for callers of `reviewer_settings`.
    files=(EVALUATION_FILE, SKILLSET_FILE, PROMPT_FILE),
    run=run,
    headline="average",
    generation=Generation(max_tokens=2048),
    judge=JudgeSettings(temperature=JUDGE_TEMPERATURE, max_tokens=JUDGE_MAX_TOKENS),
    columns=(("FLASK avg", "average"),),
    # matplotlib: the radar chart; numpy: the bootstrapped interval of its average.
    requires=("matplotlib", "numpy"),
    report=report_section,
    subsets=(
        Subset(
            HARD,
            (HARD_EVALUATION_FILE, SKILLSET_FILE, PROMPT_FILE),
            "FLASK-Hard: the 89 instances of expert-level difficulty",
        ),
    ),
)
