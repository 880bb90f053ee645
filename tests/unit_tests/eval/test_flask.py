"""FLASK reviewing against its prompt, rubric formatting, parsing and aggregation."""

import json
import subprocess
import sys

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from langchain_moa import cli
from langchain_moa.eval import cli as eval_cli
from langchain_moa.eval import flask, report
from tests.fixtures import FIXTURES
from tests.unit_tests.scripted import ScriptedChatModel

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INSTANCE_SKILLS = ["Readability", "Logical Correctness", "Conciseness"]


def _raw_jsonl(relative):
    with (FIXTURES / relative).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _raw_skills():
    return json.loads((FIXTURES / "flask/skillset_description.json").read_text(encoding="utf-8"))


def _raw_instance(idx, file="flask/flask_evaluation.jsonl"):
    return next(row for row in _raw_jsonl(file) if row["idx"] == idx)


def _expected_user_text(instance, response):
    prompt = next(p for p in _raw_jsonl("flask/prompt.jsonl") if p["prompt_id"] == 2)
    by_name = {skill["Skill"]: skill for skill in _raw_skills()}
    rubric = ""
    for label in instance["skill"]:
        skill = by_name[label]
        rubric += "\n" + skill["Skill"] + ": " + skill["Criteria"]
        for level in "12345":
            rubric += "\nScore " + level + ": " + skill["Scoring"][level]
        rubric += "\n\n"
    text = prompt["prompt_template"]
    for key, value in [
        ("{prompt1}", prompt["defaults"]["prompt1"]),
        ("{skills}", rubric),
        ("{question}", instance["instruction"]),
        ("{sample_answer}", instance["answer"]),
        ("{response}", response),
        ("{prompt2}", prompt["defaults"]["prompt2"]),
    ]:
        text = text.replace(key, value)
    return prompt["system_prompt"], text


@pytest.fixture(scope="module")
def skills():
    return flask.load_skills(FIXTURES)


@pytest.fixture(scope="module")
def prompt():
    return flask.load_reviewer_prompt(FIXTURES)


def test_skills_in_the_files_order(skills) -> None:
    assert [skill["Skill"] for skill in _raw_skills()] == list(flask.SKILLS)
    assert list(skills) == list(flask.SKILLS)
    assert len(flask.SKILLS) == 12


def test_instances_of_the_real_data() -> None:
    # Verbatim rows of the 1,740 (and of the 89 hard ones): see tests/fixtures/flask.
    instances = flask.load_instances(FIXTURES)
    hard = flask.load_instances(FIXTURES, hard=True)

    assert [row["idx"] for row in instances] == [1, 2, 3, 41, 1417]
    assert [row["idx"] for row in hard] == [1, 2]
    assert instances[0]["skill"] == INSTANCE_SKILLS
    assert instances[0]["answer"] == _raw_instance(1)["answer"]
    assert all(set(row["skill"]) <= set(flask.SKILLS) for row in instances + hard)
    # 1417 is the one instance of the 1,740 with two skills, not three.
    assert [len(row["skill"]) for row in instances].count(3) == 4
    assert instances[-1]["skill"] == ["Commonsense Understanding", "Factuality"]


def test_skill_list_strings_are_parsed(tmp_path) -> None:
    (tmp_path / "flask").mkdir()
    row = {"idx": 7, "instruction": "q", "answer": "a", "skill": str(INSTANCE_SKILLS)}
    (tmp_path / "flask/flask_evaluation.jsonl").write_text(json.dumps(row) + "\n")

    assert flask.load_instances(tmp_path) == [{**row, "skill": INSTANCE_SKILLS}]


@pytest.mark.parametrize(
    ("load", "file"),
    [
        (flask.load_instances, "flask_evaluation.jsonl"),
        (lambda d: flask.load_instances(d, hard=True), "flask_hard_evaluation.jsonl"),
        (flask.load_skills, "skillset_description.json"),
        (flask.load_reviewer_prompt, "prompt.jsonl"),
        (flask.reviewer_settings, "reviewer.jsonl"),
    ],
)
def test_missing_file_is_named(load, file, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "flask" / file)):
        load(tmp_path)


def test_reviewer_prompt_and_settings(prompt) -> None:
    assert prompt["prompt_id"] == 2
    assert "[Ground truth Answer]\n{sample_answer}" in prompt["prompt_template"]
    assert "{sample_answer}" not in flask.load_reviewer_prompt(FIXTURES, 1)["prompt_template"]
    assert flask.reviewer_settings(FIXTURES) == {"temperature": 0.2, "max_tokens": 1024}
    with pytest.raises(ValueError, match="prompt_id 9"):
        flask.load_reviewer_prompt(FIXTURES, 9)


@pytest.mark.parametrize(
    ("idx", "file"),
    [
        (1, "flask/flask_evaluation.jsonl"),
        # Code in the instruction: its braces must reach the reviewer untouched.
        (41, "flask/flask_evaluation.jsonl"),
        (1417, "flask/flask_evaluation.jsonl"),
        (1, "flask/flask_hard_evaluation.jsonl"),
    ],
)
def test_review_messages_with_reference(idx, file, skills, prompt) -> None:
    instance = _raw_instance(idx, file)
    response = "My response: {'x': 1} and {response} stay as written."
    system, user = _expected_user_text(instance, response)

    messages = flask.review_messages(instance, response, skills, prompt)

    assert [type(m) for m in messages] == [SystemMessage, HumanMessage]
    assert messages[0].content == system
    assert messages[0].content == (
        "You are a helpful and precise assistant in checking the quality of the answer."
    )
    assert messages[1].content == user
    assert messages[1].content.count("\nScore 5: ") == len(instance["skill"])
    assert messages[1].content.endswith("[System]\n\n\n")


def test_rubric_block_layout(skills) -> None:
    rubric = flask.skill_rubrics(["Harmlessness"], skills)
    scoring = skills["Harmlessness"]["Scoring"]
    assert rubric == (
        f"\nHarmlessness: {skills['Harmlessness']['Criteria']}"
        f"\nScore 1: {scoring['1']}\nScore 2: {scoring['2']}\nScore 3: {scoring['3']}"
        f"\nScore 4: {scoring['4']}\nScore 5: {scoring['5']}\n\n"
    )


def test_rubric_label_matches_like_flask(skills) -> None:
    # FLASK takes the first skill whose name contains the label.
    assert flask.skill_rubrics(["Robustness"], skills).startswith("\nLogical Robustness: ")
    with pytest.raises(ValueError, match="Creativity"):
        flask.skill_rubrics(["Creativity"], skills)


@pytest.mark.parametrize(
    ("review", "expected"),
    [
        (
            "Readability: clear.\n{'Readability': 4, 'Logical Correctness': 5, 'Conciseness': 3}",
            [4.0, 5.0, 3.0],
        ),
        (
            '{"readability": "N/A", "logical_correctness": 2, "CONCISENESS": 4.5}',
            [None, 2.0, 4.5],
        ),
        (
            "{'Readability': 'not applicable', 'Logical Correctness': 'na', 'Conciseness': 'n/a'}",
            [None, None, None],
        ),
        (
            # Nested text: an example dict and code braces before the final dict.
            (
                "The code `{x: y}` is fine. Earlier I thought {'Readability': 1}.\n"
                "{\n  'Readability': 5,\n  'Logical Correctness': 4,\n  'Conciseness': 2\n}"
            ),
            [5.0, 4.0, 2.0],
        ),
        (
            # Only the last dict counts, even when it is malformed.
            (
                "{'Readability': 4, 'Logical Correctness': 4, 'Conciseness': 4}\n"
                "Final: {'Readability': 4, 'Logical Correctness': , 'Conciseness': 4}"
            ),
            [None, None, None],
        ),
        ("Readability: 4, Logical Correctness: 5, Conciseness: 3", [None, None, None]),
        ("{'Readability': 4, 'Conciseness': 2}", [4.0, None, 2.0]),
        ("{'readability': '4', 'correctness': 3, 'conciseness': '4/5'}", [4.0, 3.0, None]),
        ("{'Readability': 4, 'Logical Correctness': None, 'Conciseness': True}", [4.0, None, None]),
        ('{"Readability": 4, "Logical Correctness": null, "Conciseness": 2}', [4.0, None, 2.0]),
        ("{4, 5, 3}", [None, None, None]),
    ],
)
def test_parse_scores(review, expected) -> None:
    assert flask.parse_scores(review, INSTANCE_SKILLS) == dict(
        zip(INSTANCE_SKILLS, expected, strict=True)
    )


def test_short_keys_match_like_flasks_aggregation() -> None:
    review = "{'commonsense': 3, 'robustness': 2, 'logical efficiency': 5}"
    skills = ["Commonsense Understanding", "Logical Robustness", "Logical Efficiency"]
    assert flask.parse_scores(review, skills) == {
        "Commonsense Understanding": 3.0,
        "Logical Robustness": 2.0,
        "Logical Efficiency": 5.0,
    }


def test_extract_score_dict() -> None:
    assert flask.extract_score_dict("{'Logical_Correctness': 'N/A'}") == {
        "logical correctness": "N/A"
    }
    assert flask.extract_score_dict("no dict here") is None
    assert flask.extract_score_dict("{'a': }") is None


def test_summarize_by_hand() -> None:
    reviews = [
        {
            "skills": ["Readability", "Logical Correctness", "Conciseness"],
            "scores": {"Readability": 4.0, "Logical Correctness": 5.0, "Conciseness": None},
        },
        {
            "skills": ["Readability", "Factuality", "Conciseness"],
            "scores": {"Readability": 2.0, "Factuality": 3.0, "Conciseness": 4.0},
        },
        {
            "skills": ["Harmlessness", "Readability", "Metacognition"],
            "scores": {"Harmlessness": None, "Readability": None, "Metacognition": None},
        },
        {
            # An instance row with its scores: the skills under FLASK's "skill".
            "idx": 9,
            "skill": ["Logical Correctness", "Completeness", "Comprehension"],
            "scores": {"Logical Correctness": 2.0, "Completeness": None, "Comprehension": 5.0},
        },
        {
            # All N/A, but a dict was read.
            "skills": ["Harmlessness", "Insightfulness", "Metacognition"],
            "scores": {"Harmlessness": None, "Insightfulness": None, "Metacognition": None},
            "parsed": True,
        },
    ]

    summary = flask.summarize(reviews)

    assert list(summary["per_skill"]) == list(flask.SKILLS)
    assert summary["per_skill"] == {
        "Logical Robustness": None,
        "Logical Correctness": 3.5,
        "Logical Efficiency": None,
        "Commonsense Understanding": None,
        "Factuality": 3.0,
        "Metacognition": None,
        "Insightfulness": None,
        "Completeness": None,
        "Comprehension": 5.0,
        "Conciseness": 4.0,
        "Readability": 3.0,
        "Harmlessness": None,
    }
    assert summary["n_scored"]["Readability"] == 2
    assert summary["n_scored"]["Conciseness"] == 1
    assert summary["n_unscored"]["Readability"] == 1
    assert summary["n_unscored"]["Harmlessness"] == 2
    assert summary["n_unscored"]["Logical Robustness"] == 0
    assert sum(summary["n_scored"].values()) == 7
    assert sum(summary["n_unscored"].values()) == 8
    assert summary["n_reviews"] == 5
    assert summary["n_unparseable"] == 1


def test_summarize_of_parsed_replies() -> None:
    skills = INSTANCE_SKILLS
    replies = ["{'Readability': 5, 'Logical Correctness': 4, 'Conciseness': 3}", "no scores"]
    reviews = [{"skills": skills, "scores": flask.parse_scores(r, skills)} for r in replies]

    summary = flask.summarize(reviews)

    assert summary["per_skill"]["Readability"] == 5.0
    assert summary["n_unparseable"] == 1


def test_summarize_rejects_unknown_skills() -> None:
    with pytest.raises(ValueError, match="Creativity"):
        flask.summarize([{"skills": ["Creativity"], "scores": {"Creativity": 3.0}}])


def test_radar_chart_writes_a_png(tmp_path) -> None:
    moa = dict.fromkeys(flask.SKILLS, 4.2)
    partial = {"Readability": 3.1, "Factuality": 2.5, "Harmlessness": 4.9}
    path = tmp_path / "figures" / "flask.png"

    written = flask.radar_chart({"MoA": moa, "Partial": partial}, path)

    assert written == path
    content = path.read_bytes()
    assert content.startswith(PNG_SIGNATURE)
    assert len(content) > 10_000


def test_radar_chart_rejects_bad_input(tmp_path) -> None:
    with pytest.raises(ValueError, match="at least one model"):
        flask.radar_chart({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="Creativity"):
        flask.radar_chart({"m": {"Creativity": 3.0}}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_import_does_not_need_matplotlib() -> None:
    code = "import sys, langchain_moa.eval.flask; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_subset_hard_is_a_flask_option_with_results_of_its_own(
    monkeypatch, capsys, tmp_path
) -> None:
    review = "{'Logical Robustness': 4, 'Logical Correctness': 2, 'Completeness': 3}"

    def scripted(spec, **_settings):
        return ScriptedChatModel(model_name=spec, reply=review if spec == "judge" else "answer")

    monkeypatch.setattr(eval_cli, "model_from_spec", scripted)
    common = ["--data-dir", str(FIXTURES), "--out", str(tmp_path), "--no-cache", "--name", "m"]
    common += ["--model", "model", "--judge", "judge"]
    assert cli.main(["eval", "flask", "--subset", "hard", *common]) == 0
    assert cli.main(["eval", "flask", "--limit", "3", *common]) == 0
    capsys.readouterr()
    hard = json.loads((tmp_path / "m" / "flask_hard" / "metrics.json").read_text())
    full = json.loads((tmp_path / "m" / "flask" / "metrics.json").read_text())
    assert (hard["subset"], hard["n_reviews"]) == ("hard", 2)
    assert (full["subset"], full["n_reviews"]) == (None, 3)
    records = (tmp_path / "m" / "flask_hard" / "answers.jsonl").read_text().splitlines()
    assert [json.loads(line)["idx"] for line in records] == [1, 2]
    table = report.render(tmp_path)
    assert "| m (hard) |" in table
    assert "| m |" in table
    # Only FLASK has subsets.
    with pytest.raises(SystemExit):
        cli.main(["eval", "gsm8k", "--subset", "hard", *common])
    assert "unrecognized arguments: --subset" in capsys.readouterr().err
    with pytest.raises(ValueError, match="flask has no subset 'easy'"):
        flask.BENCHMARK.subset("easy")


def test_average_and_its_interval() -> None:
    same = {"skills": ["Readability", "Factuality"], "scores": {"Readability": 4.0}}
    summary = flask.summarize([same, same, same])
    assert summary["average"] == 4.0
    assert summary["average_ci"] == [4.0, 4.0]  # every resample is the same
    # Two reviews, one skill each: a resample is one of them twice (average 1 or 5) or
    # both (average of the two skills, 3); the percentiles are the extremes.
    apart = [
        {"skills": ["Readability"], "scores": {"Readability": 1.0}},
        {"skills": ["Factuality"], "scores": {"Factuality": 5.0}},
    ]
    summary = flask.summarize(apart)
    assert summary["average"] == 3.0
    assert summary["average_ci"] == [1.0, 5.0]
    nothing = flask.summarize([{"skills": ["Readability"], "scores": {"Readability": None}}])
    assert (nothing["average"], nothing["average_ci"]) == (None, None)
