"""MT-Bench judging against FastChat's templates, rules and averages."""

import json
import string
import time

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from langchain_moa.eval import mt_bench, stats
from langchain_moa.eval.data import packaged
from tests.fixtures import FIXTURES

ANSWERS = [
    "First answer, with code: def f():\n    return {'a': 1}  # {question}",
    "Second answer {answer_1} stays literal.",
]


def _raw_jsonl(relative):
    # The shipped file, read without the loaders under test.
    with packaged(relative).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _raw_question(question_id):
    return next(q for q in _raw_jsonl("mt_bench/question.jsonl") if q["question_id"] == question_id)


def _raw_prompt(name):
    return next(p for p in _raw_jsonl("mt_bench/judge_prompts.jsonl") if p["name"] == name)


def _raw_reference(question_id):
    rows = _raw_jsonl("mt_bench/reference_answer/gpt-4.jsonl")
    return next(r for r in rows if r["question_id"] == question_id)["choices"][0]["turns"]


def _fill(template, fields):
    # Plain replacement in the template's own order, so that a value holding a
    # "{name}" is never substituted again (what str.format guarantees).
    out, rest = "", template
    while "{" in rest:
        before, _, after = rest.partition("{")
        name, _, rest = after.partition("}")
        out += before + fields[name]
    return out + rest


@pytest.fixture(scope="module")
def prompts():
    return mt_bench.load_judge_prompts()


@pytest.fixture(scope="module")
def references():
    return mt_bench.load_reference_answers()


def test_fastchat_constants() -> None:
    assert mt_bench.TEMPERATURE_BY_CATEGORY == {
        "writing": 0.7,
        "roleplay": 0.7,
        "extraction": 0.0,
        "math": 0.0,
        "coding": 0.0,
        "reasoning": 0.0,
        "stem": 0.1,
        "humanities": 0.1,
    }
    assert mt_bench.NEED_REFERENCE == ("math", "reasoning", "coding")
    assert mt_bench.generation_temperature("writing") == 0.7
    assert mt_bench.generation_temperature("stem") == 0.1
    assert mt_bench.generation_temperature("unknown") == 0.7


def test_questions_and_references_of_the_real_data(references) -> None:
    questions = mt_bench.load_questions()
    assert [q["question_id"] for q in questions] == list(range(81, 161))
    categories = {q["category"] for q in questions}
    assert categories == set(mt_bench.TEMPERATURE_BY_CATEGORY)
    assert all(len(q["turns"]) == 2 for q in questions)
    needing = {q["question_id"] for q in questions if q["category"] in mt_bench.NEED_REFERENCE}
    assert len(needing) == 30
    assert set(references) == needing
    assert references[111] == _raw_reference(111)


def test_the_fixture_folder_holds_rows_of_the_real_data(references, prompts) -> None:
    questions = mt_bench.load_questions(FIXTURES)
    ids = [q["question_id"] for q in questions]
    assert ids == [81, 82, 101, 111, 121]
    assert questions == [q for q in mt_bench.load_questions() if q["question_id"] in ids]
    assert mt_bench.load_reference_answers(FIXTURES) == {
        question_id: references[question_id] for question_id in (101, 111, 121)
    }
    assert mt_bench.load_judge_prompts(FIXTURES) == prompts


def test_judge_prompts_by_name(prompts) -> None:
    assert set(prompts) == {
        "pair-v2",
        "pair-v2-multi-turn",
        "pair-math-v1",
        "pair-math-v1-multi-turn",
        "single-v1",
        "single-math-v1",
        "single-v1-multi-turn",
        "single-math-v1-multi-turn",
    }
    assert prompts["single-v1"] == _raw_prompt("single-v1")


@pytest.mark.parametrize(
    "load",
    [mt_bench.load_questions, mt_bench.load_reference_answers, mt_bench.load_judge_prompts],
)
def test_missing_file_is_named(load, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "mt_bench")):
        load(tmp_path)


def test_turn_1_general(prompts) -> None:
    question = _raw_question(81)
    raw = _raw_prompt("single-v1")
    expected = raw["prompt_template"].replace("{question}", question["turns"][0])
    expected = expected.replace("{answer}", ANSWERS[0])

    messages, name = mt_bench.judge_messages(question, ANSWERS, 1, prompts)

    assert name == "single-v1"
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage]
    assert messages[0].content == "You are a helpful assistant."
    assert messages[1].content == expected
    assert "[Question]\nCompose an engaging travel blog post" in messages[1].content


def test_turn_2_general(prompts) -> None:
    question = _raw_question(81)
    raw = _raw_prompt("single-v1-multi-turn")
    expected = raw["prompt_template"]
    for key, value in {
        "{question_1}": question["turns"][0],
        "{answer_1}": ANSWERS[0],
        "{question_2}": question["turns"][1],
        "{answer_2}": ANSWERS[1],
    }.items():
        expected = expected.replace(key, value)

    messages, name = mt_bench.judge_messages(question, ANSWERS, 2, prompts)

    assert name == "single-v1-multi-turn"
    assert [m.type for m in messages] == ["system", "human"]
    assert messages[0].content == raw["system_prompt"]
    assert messages[0].content.endswith('"Rating: [[5]]".\n\n')
    assert messages[1].content == expected


def test_turn_1_math_with_reference(prompts, references) -> None:
    question = _raw_question(111)
    reference = _raw_reference(111)
    raw = _raw_prompt("single-math-v1")
    expected = _fill(
        raw["prompt_template"],
        {"question": question["turns"][0], "ref_answer_1": reference[0], "answer": ANSWERS[0]},
    )

    messages, name = mt_bench.judge_messages(question, ANSWERS, 1, prompts, references[111])

    assert name == "single-math-v1"
    assert [m.type for m in messages] == ["system", "human"]
    assert messages[0].content == "You are a helpful assistant."
    assert messages[1].content == expected
    assert "[The Start of Reference Answer]\nTo find the area" in messages[1].content


def test_turn_2_math_multi_turn_with_reference(prompts, references) -> None:
    question = _raw_question(111)
    reference = _raw_reference(111)
    raw = _raw_prompt("single-math-v1-multi-turn")
    expected = _fill(
        raw["prompt_template"],
        {
            "question_1": question["turns"][0],
            "question_2": question["turns"][1],
            "ref_answer_1": reference[0],
            "ref_answer_2": reference[1],
            "answer_1": ANSWERS[0],
            "answer_2": ANSWERS[1],
        },
    )

    messages, name = mt_bench.judge_messages(question, ANSWERS, 2, prompts, references[111])

    assert name == "single-math-v1-multi-turn"
    assert [m.type for m in messages] == ["system", "human"]
    assert messages[0].content == raw["system_prompt"]
    assert messages[1].content == expected
    # Both questions appear twice: once with the reference, once with the answers.
    assert messages[1].content.count(question["turns"][1]) == 2


@pytest.mark.parametrize(
    ("category", "turn", "name"),
    [
        ("writing", 1, "single-v1"),
        ("roleplay", 2, "single-v1-multi-turn"),
        ("extraction", 1, "single-v1"),
        ("stem", 2, "single-v1-multi-turn"),
        ("humanities", 1, "single-v1"),
        ("math", 1, "single-math-v1"),
        ("reasoning", 2, "single-math-v1-multi-turn"),
        ("coding", 1, "single-math-v1"),
    ],
)
def test_judge_prompt_by_category(category, turn, name) -> None:
    assert mt_bench.judge_prompt_name(category, turn) == name


def test_every_question_builds_both_turns(prompts, references) -> None:
    for question in mt_bench.load_questions():
        reference = references.get(question["question_id"])
        for turn in (1, 2):
            messages, _ = mt_bench.judge_messages(
                question, ["A one", "A two"], turn, prompts, reference
            )
            text = messages[-1].content
            assert ("A two" in text) == (turn == 2)
            assert "A one" in text
            assert (reference is not None) == ("Reference" in text)
            for field in ("{question", "{answer", "{ref_answer"):
                assert field not in text


def test_reference_category_needs_reference(prompts) -> None:
    with pytest.raises(ValueError, match="reference_turns"):
        mt_bench.judge_messages(_raw_question(101), ANSWERS, 1, prompts)


def test_reference_is_ignored_for_general_categories(prompts) -> None:
    question = _raw_question(81)
    with_reference = mt_bench.judge_messages(question, ANSWERS, 2, prompts, ["r1", "r2"])
    without = mt_bench.judge_messages(question, ANSWERS, 2, prompts)
    assert with_reference == without


@pytest.mark.parametrize(("turn", "answers"), [(3, ANSWERS), (0, ANSWERS), (2, ANSWERS[:1])])
def test_bad_turns_are_errors(prompts, turn, answers) -> None:
    with pytest.raises(ValueError, match="turn"):
        mt_bench.judge_messages(_raw_question(81), answers, turn, prompts)


@pytest.mark.parametrize(
    ("judgment", "expected"),
    [
        ("The answer is good.\n\nRating: [[7]]", 7.0),
        ("Rating: [[8.5]]", 8.5),
        ("Rating: [6]", 6.0),
        ("Rating: [[10]]", 10.0),
        ("I cannot rate this.", None),
        ("$ERROR$", None),
        ("Rating: [[A]]", None),
        ("First [[3]], then on reflection [[9]].", 3.0),
        ("Step [2] of the answer is wrong. Rating: [[4]]", 4.0),
        ("Items [1] and [5].", 1.0),
    ],
)
def test_parse_rating(judgment, expected) -> None:
    assert mt_bench.parse_rating(judgment) == expected


def test_summarize_pools_turns_and_drops_unparseable() -> None:
    judgments = [
        {"question_id": 81, "category": "writing", "turn": 1, "score": 8.0},
        {"question_id": 81, "category": "writing", "turn": 2, "score": 6.0},
        {"question_id": 111, "category": "math", "turn": 1, "score": 3.0},
        {"question_id": 111, "category": "math", "turn": 2, "score": None},
        {"question_id": 112, "category": "math", "turn": 1, "score": 5.5},
        {"question_id": 112, "category": "math", "turn": 2, "score": -1},
        {"question_id": 121, "category": "coding", "turn": 1, "score": None},
    ]

    summary = mt_bench.summarize(judgments)

    # Questions are resampled whole, 81's two scores together; 121 has none to resample.
    groups = [[8.0, 6.0], [3.0], [5.5]]
    assert summary.pop("overall_ci") == stats.pooled_mean_interval(groups)
    assert summary == {
        # (8 + 6 + 3 + 5.5) / 4, not the mean of the turn means (5.75).
        "overall": 5.625,
        "turn_1": 5.5,
        "turn_2": 6.0,
        "per_category": {"writing": 7.0, "math": 4.25, "coding": None},
        "n_judgments": 7,
        "n_scored": 4,
        "n_unparseable": 3,
        "n_turn_1": 3,
        "n_turn_2": 1,
        "n_per_category": {"writing": 2, "math": 2, "coding": 0},
    }


def test_summarize_nothing() -> None:
    summary = mt_bench.summarize([])
    assert summary["overall"] is None
    assert summary["overall_ci"] is None
    assert summary["turn_1"] is None
    assert summary["n_judgments"] == 0


def test_summarize_rejects_a_third_turn() -> None:
    with pytest.raises(ValueError, match="turn"):
        mt_bench.summarize([{"question_id": 81, "category": "writing", "turn": 3, "score": 5}])


def test_answer_record_is_fastchats_format() -> None:
    record = mt_bench.answer_record(81, "moa", ("one", "two"), answer_id="abc", tstamp=12.5)

    assert record == {
        "question_id": 81,
        "answer_id": "abc",
        "model_id": "moa",
        "choices": [{"index": 0, "turns": ["one", "two"]}],
        "tstamp": 12.5,
    }
    reference_row = _raw_jsonl("mt_bench/reference_answer/gpt-4.jsonl")[0]
    assert list(record) == list(reference_row)
    assert json.loads(json.dumps(record)) == record


def test_answer_record_defaults() -> None:
    before = time.time()
    first = mt_bench.answer_record(81, "moa", ["a", "b"])
    second = mt_bench.answer_record(81, "moa", ["a", "b"])

    assert before <= first["tstamp"] <= time.time()
    assert len(first["answer_id"]) == 22
    assert set(first["answer_id"]) <= set(string.ascii_letters + string.digits) - set("01IOl")
    assert first["answer_id"] != second["answer_id"]
