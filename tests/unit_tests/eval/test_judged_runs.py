"""MT-Bench and FLASK runs end to end on scripted models: files, scores, resume."""

import asyncio
import json

import pytest

from langchain_moa import ChatMoA
from langchain_moa.eval import flask, mt_bench
from langchain_moa.eval.alpaca import evaluate
from langchain_moa.eval.alpaca.judge import is_swapped
from tests.fixtures import FIXTURES
from tests.unit_tests.scripted import ScriptedChatModel


def _rating_judge():
    def rate(messages):
        text = messages[-1].text
        if "<|The Start of Assistant A's Conversation with User|>" in text:
            return "Fine follow-up. Rating: [[6]]"
        return "No rating here." if "[The Start of Reference Answer]" in text else "Good. [[8]]"

    return ScriptedChatModel(model_name="judge", reply=rate)


async def test_mt_bench_run(tmp_path) -> None:
    model = ScriptedChatModel(model_name="m", reply="An answer.")
    judge = _rating_judge()
    metrics = await mt_bench.run(model, FIXTURES, tmp_path, judge=judge, limit=2)
    assert metrics["n_judgments"] == 4
    assert metrics["turn_1"] == 8.0
    assert metrics["turn_2"] == 6.0
    assert metrics["overall"] == 7.0
    assert metrics["judge"] == "judge"
    assert metrics["generation"]["usage"]["m"]["calls"] == 4
    # Turn 2 sees the whole conversation; writing is sampled at 0.7.
    second = next(call for call in model.log if len(call["messages"]) == 3)
    assert [m.type for m in second["messages"]] == ["human", "ai", "human"]
    assert second["kwargs"]["temperature"] == 0.7
    answers = [json.loads(x) for x in (tmp_path / "model_answer.jsonl").read_text().splitlines()]
    assert answers[0]["choices"] == [{"index": 0, "turns": ["An answer.", "An answer."]}]
    assert answers[0]["model_id"] == "m"
    judgments = [json.loads(x) for x in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    assert {tuple(j["judge"]) for j in judgments} == {
        ("judge", "single-v1"), ("judge", "single-v1-multi-turn")
    }  # fmt: skip
    again = await mt_bench.run(model, FIXTURES, tmp_path, judge=judge, limit=2)
    assert again["overall"] == 7.0
    assert len(model.log) == 4
    assert len(judge.log) == 4


async def test_mt_bench_unparseable_judgment_is_recorded_not_scored(tmp_path) -> None:
    questions = mt_bench.load_questions(FIXTURES)
    first_math = next(i for i, q in enumerate(questions) if q["category"] == "math")
    model = ScriptedChatModel(model_name="m", reply="42")
    metrics = await mt_bench.run(
        model, FIXTURES, tmp_path, judge=_rating_judge(), limit=first_math + 1
    )
    # Reference categories' first turns (math, reasoning) got no rating.
    needs_reference = [q for q in questions[: first_math + 1] if q["category"] != "writing"]
    expected = sum(q["category"] in {"math", "reasoning"} for q in needs_reference)
    assert expected >= 1
    assert metrics["n_unparseable"] == expected
    judgments = [json.loads(x) for x in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    math_turn_1 = next(j for j in judgments if j["category"] == "math" and j["turn"] == 1)
    assert math_turn_1["score"] is None
    assert math_turn_1["judge"][1] == "single-math-v1"
    assert model.log[-1]["kwargs"]["temperature"] == 0.0


async def test_flask_run(tmp_path) -> None:
    model = ChatMoA(
        proposers=[ScriptedChatModel(model_name="p", reply="draft")],
        aggregator=ScriptedChatModel(model_name="a", reply="final answer"),
        layers=2,
    )
    review = (
        "Feedback...\n{'Readability': 4, 'Logical Correctness': 'N/A', 'Conciseness': 2, "
        "'Factuality': 5, 'Completeness': 3, 'Comprehension': 4, 'Insightfulness': 2, "
        "'Logical Robustness': 3, 'Logical Efficiency': 4, 'Commonsense Understanding': 5, "
        "'Metacognition': 1, 'Harmlessness': 5}"
    )
    judge = ScriptedChatModel(model_name="judge", reply=review)
    metrics = await flask.run(model, FIXTURES, tmp_path, judge=judge, limit=3)
    assert metrics["n_reviews"] == 3
    assert metrics["per_skill"]["Readability"] == 4.0
    assert metrics["per_skill"]["Logical Correctness"] is None  # N/A only
    scored = [v for v in metrics["per_skill"].values() if v is not None]
    assert metrics["average"] == sum(scored) / len(scored)
    assert (tmp_path / "flask_radar.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The reviewer saw the MoA answer and the reference answer.
    prompt = judge.log[0]["messages"][-1].text
    assert "final answer" in prompt
    assert flask.load_instances(FIXTURES)[0]["answer"] in prompt
    assert metrics["generation"]["usage"]["a"]["calls"] == 3


async def test_alpaca_run_maps_swapped_judgements_back_and_resumes(tmp_path) -> None:
    references = evaluate.load_reference_outputs(FIXTURES)
    model = ScriptedChatModel(model_name="m", reply="A short answer.")

    def prefers_the_short_answer(messages):
        # The judge names the position holding our model's answer.
        text = messages[-1].text
        first = text.index('"model_identifier": "m"')
        return "m" if text.index("A short answer.", first) < text.index('"M"') else "M"

    judge = ScriptedChatModel(model_name="judge", reply=prefers_the_short_answer)
    metrics = await evaluate.run(model, FIXTURES, tmp_path, judge=judge, limit=6)
    assert metrics["win_rate"] == 100.0
    assert metrics["n_wins"] == 6
    assert metrics["length_controlled_winrate"] is not None
    annotations = json.loads((tmp_path / "annotations.json").read_text())
    swaps = [a["is_swapped"] for a in annotations]
    assert swaps == [is_swapped(r["instruction"]) for r in references[:6]]
    assert True in swaps
    assert False in swaps
    assert {a["preference_source"] for a in annotations} == {"text"}
    assert annotations[0]["output_1"] == references[0]["output"]
    assert annotations[0]["generator_2"] == "m"
    outputs = json.loads((tmp_path / "model_outputs.json").read_text())
    assert set(outputs[0]) == {"instruction", "output", "generator", "dataset"}
    assert metrics == await evaluate.run(model, FIXTURES, tmp_path, judge=judge, limit=6)
    assert len(judge.log) == 6


async def test_alpaca_identical_output_is_a_draw_without_the_judge(tmp_path) -> None:
    reference = evaluate.load_reference_outputs(FIXTURES)[0]["output"]
    model = ScriptedChatModel(model_name="copycat", reply=reference)
    judge = ScriptedChatModel(model_name="judge", reply="M")
    metrics = await evaluate.run(model, FIXTURES, tmp_path, judge=judge, limit=1)
    assert metrics["n_draws"] == 1
    assert judge.log == []


async def test_alpaca_unparseable_judgement_is_left_out(tmp_path) -> None:
    model = ScriptedChatModel(model_name="m", reply="x")
    judge = ScriptedChatModel(model_name="judge", reply="I think both are fine")
    metrics = await evaluate.run(model, FIXTURES, tmp_path, judge=judge, limit=2)
    assert metrics["n_unparsed_judgements"] == 2
    assert metrics["n_total"] == 0


async def test_alpaca_resumed_after_a_kill_writes_the_same_files(tmp_path) -> None:
    model = ScriptedChatModel(model_name="m", reply="A short answer.")

    def judge(**kwargs):
        def reply(messages):
            return "M" if len(messages[-1].text) % 2 else "m"

        return ScriptedChatModel(model_name="j", reply=reply, **kwargs)

    whole = tmp_path / "whole"
    await evaluate.run(model, FIXTURES, whole, judge=judge(), limit=8)

    # Cancelled mid-run, as asyncio cancels a run on Ctrl-C.
    resumed = tmp_path / "resumed"
    annotations = resumed / "annotations.jsonl"
    slow = judge(delay_s=0.05)
    task = asyncio.create_task(
        evaluate.run(model, FIXTURES, resumed, judge=slow, concurrency=1, limit=8)
    )
    while not (annotations.is_file() and len(annotations.read_text().splitlines()) >= 3):  # noqa: ASYNC110 - polls what the run writes
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    done_before = len(annotations.read_text().splitlines())
    assert 3 <= done_before < 8
    rest = judge()
    await evaluate.run(model, FIXTURES, resumed, judge=rest, limit=8)
    assert len(rest.log) == 8 - done_before  # only what was not done
    for name in ("annotations.json", "model_outputs.json"):
        assert (resumed / name).read_text() == (whole / name).read_text()
