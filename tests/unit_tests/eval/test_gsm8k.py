import pytest

from langchain_moa import ChatMoA
from langchain_moa.eval import gsm8k, stats
from tests.fixtures import FIXTURES
from tests.unit_tests.scripted import ScriptedChatModel


def test_targets_of_the_real_data() -> None:
    problems = gsm8k.load_problems()
    assert len(problems) == 1319
    assert problems[0]["target"] == "18"
    assert all(p["target"] for p in problems)
    assert gsm8k.load_problems(FIXTURES) == problems[:5]


def test_a_data_folder_without_the_file_is_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"gsm8k/test\.jsonl"):
        gsm8k.load_problems(tmp_path)


@pytest.mark.parametrize(
    ("text", "strict", "flexible"),
    [
        ("She makes 9 * 2 = $18.\n#### 18", "18", "18"),
        ("So the answer is $1,250.00 in total.", None, "1250"),
        # Strict: the first marker, as the references are read; flexible: the last number.
        ("#### 5\nActually, 7 eggs remain.", "5", "7"),
        ("#### 3\n#### 4", "3", "4"),
        ("The loss is -3.5 dollars", None, "-3.5"),
        ("I cannot tell.", None, None),
        # Unicode minus signs.
        ("#### \u22125", "-5", "-5"),
        ("The change is \u22122.5 degrees", None, "-2.5"),
        ("#### \uff0d7", "-7", "-7"),
        # A hyphen after a word or digit is not a minus.
        ("between 3-5 hours", None, "5"),
        # Leading decimal points.
        ("#### .5", "0.5", "0.5"),
        ("It is -.25 of it", None, "-0.25"),
        # Thousands separators: commas, thin, narrow no-break, no-break and plain spaces.
        ("#### 1,000,000", "1000000", "1000000"),
        ("#### 1 000", "1000", "1000"),
        ("#### 1\u2009000", "1000", "1000"),
        ("#### 12\u202f345", "12345", "12345"),
        ("#### 1\u00a0000", "1000", "1000"),
        ("in groups of three only: 3 4", None, "4"),
        ("10,20,30", None, "30"),
        # Trailing punctuation and markup.
        ("#### 18.", "18", "18"),
        ("#### 18!", "18", "18"),
        ("#### **18**", "18", "18"),
        ("#### $1,000.", "1000", "1000"),
        ("The answer is 42).", None, "42"),
        # Numbers compare as values.
        ("#### 18.00", "18", "18"),
        ("#### -0", "0", "0"),
    ],
)
def test_extractions(text, strict, flexible) -> None:
    assert gsm8k.extract_strict(text) == strict
    assert gsm8k.extract_flexible(text) == flexible


def test_target_without_marker_is_an_error() -> None:
    with pytest.raises(ValueError, match="without '#### <number>'"):
        gsm8k.target_number("The answer is 4.")


async def test_run_scores_and_resumes(tmp_path) -> None:
    def answer(messages):
        question = messages[-1].content
        return "#### 18" if question.startswith("Janet") else "no idea"

    model = ScriptedChatModel(model_name="m", reply=answer)
    metrics = await gsm8k.run(model, FIXTURES, tmp_path, limit=3)
    generation = metrics.pop("generation")
    assert metrics.pop("accuracy_ci") == metrics.pop("accuracy_flexible_ci")
    assert metrics == {
        "accuracy": 100 / 3,
        "accuracy_strict": 100 / 3,
        "accuracy_flexible": 100 / 3,
        "n_correct_strict": 1,
        "n_correct_flexible": 1,
        "n_total": 3,
        "n_no_number_strict": 2,
        "n_no_number_flexible": 2,
    }
    assert generation["usage"]["m"]["calls"] == 3
    assert generation["usage"]["m"]["output_tokens"] == 2 + 2 + 2
    assert len(model.log) == 3
    assert gsm8k.INSTRUCTION in model.log[0]["messages"][0].content
    again = await gsm8k.run(model, FIXTURES, tmp_path, limit=3)
    assert again.pop("accuracy_ci") == again.pop("accuracy_flexible_ci")
    assert again == {**metrics, "generation": generation}
    assert len(model.log) == 3  # nothing asked twice


async def test_moa_records_carry_layers_usage_and_latency(tmp_path) -> None:
    proposer = ScriptedChatModel(model_name="p", reply="#### 18")
    moa = ChatMoA(proposers=[proposer, proposer], aggregator=proposer, layers=2)
    await gsm8k.run(moa, None, tmp_path, limit=1)
    record = gsm8k.JsonlStore(tmp_path / "answers.jsonl", "id").records()[0]
    assert record["correct_strict"] is True
    assert record["predicted_flexible"] == "18"
    assert [len(layer) for layer in record["layers"]] == [2, 1]
    assert record["usage"]["output_tokens"] == 3 * 2
    assert record["latency_s"] > 0


async def test_old_answers_files_are_scored_from_their_outputs(tmp_path) -> None:
    # A record written before the two extractions: one "predicted", scored the old way.
    problems = gsm8k.load_problems(FIXTURES)[:2]
    old = [
        {**problems[0], "output": "#### 18\nor maybe 17", "model": "m", "usage": None,
         "latency_s": 1.0, "layers": [], "predicted": "18", "correct": True},
        {**problems[1], "output": "It takes 3 bolts.", "model": "m", "usage": None,
         "latency_s": 1.0, "layers": [], "predicted": "3", "correct": True},
    ]  # fmt: skip
    store = gsm8k.JsonlStore(tmp_path / "answers.jsonl", "id")
    for record in old:
        store.append(record)
    model = ScriptedChatModel(model_name="m", reply="unused")
    metrics = await gsm8k.run(model, FIXTURES, tmp_path, limit=2)
    assert model.log == []  # resumed: nothing asked
    assert problems[1]["target"] == "3"
    assert metrics["accuracy_strict"] == 50
    assert metrics["accuracy_flexible"] == 50
    assert metrics["n_no_number_strict"] == 1


def test_accuracy_interval_is_bootstrapped_over_problems() -> None:
    records = [
        {"id": i, "target": "1", "output": "#### 1" if i < 30 else "#### 2"} for i in range(40)
    ]
    summary = gsm8k.summarize(records)
    assert summary["accuracy"] == 75
    assert summary["accuracy_ci"] == stats.mean_interval([100.0] * 30 + [0.0] * 10)
    low, high = summary["accuracy_ci"]
    # The normal approximation: 75 +- 1.96 * sqrt(0.75 * 0.25 / 40) * 100, about 61.6 to 88.4.
    assert 58 < low < 66
    assert 85 < high < 92
    assert gsm8k.summarize([])["accuracy_ci"] is None
