"""Checked against alpaca_eval 0.6.6 itself, called offline, and against its published results."""

import ast
import csv
import gzip
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
import yaml
from alpaca_eval import utils as ae_utils
from alpaca_eval.annotators import PairwiseAnnotator
from alpaca_eval.annotators import base as ae_base
from alpaca_eval.completion_parsers import logprob_parser
from alpaca_eval.metrics import get_winrate, glm_winrate
from langchain_core.messages import HumanMessage, SystemMessage

from langchain_moa.eval.alpaca import evaluate, judge, metrics
from tests.fixtures import FIXTURES

# alpaca-7b's published annotations, all 805, gzipped as they are (see the folder's README).
FIXTURE = FIXTURES / "alpaca_eval" / "alpaca-7b_weighted_alpaca_eval_gpt4_turbo_annotations.json.gz"
FIXTURE_SHA256 = "41047c654c6c5ddc0290fb207367e3f458d22692045eb41927eb64103a2cb764"
JUDGE_DIR = FIXTURES / "alpaca_eval" / "judge"
LEADERBOARD = (
    JUDGE_DIR / "leaderboards_data_AlpacaEval_2_weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"
)
JUDGE_CONFIG = JUDGE_DIR / "evaluators_configs_weighted_alpaca_eval_gpt4_turbo_configs.yaml"
JUDGE = "weighted_alpaca_eval_gpt4_turbo"
ROLE = {"system": "system", "human": "user", "ai": "assistant"}
WINRATE_FIELDS = ["win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total"]


@pytest.fixture(scope="module")
def annotations():
    return json.loads(gzip.decompress(FIXTURE.read_bytes()))


@pytest.fixture(scope="module")
def reference():
    return evaluate.load_reference_outputs()


@pytest.fixture(scope="module")
def template():
    return judge.load_judge_template()


@pytest.fixture(scope="module")
def alpaca_7b_row():
    with LEADERBOARD.open(encoding="utf-8") as rows:
        return next(row for row in csv.DictReader(rows) if row[""] == "alpaca-7b")


@pytest.fixture
def ae_annotator():
    """alpaca_eval's own annotator for the weighted GPT-4 Turbo judge, caching nothing."""
    return PairwiseAnnotator(annotators_config=JUDGE, caching_path=None)


def top_logprobs(raw_completion):
    # Stored as a dict here; other alpaca_eval dumps store its Python repr.
    if isinstance(raw_completion, str):
        raw_completion = ast.literal_eval(raw_completion)
    return raw_completion["logprobs"]["content"][0]["top_logprobs"]


def ae_parse(completion):
    """alpaca_eval's parser, configured as the judge's config configures it."""
    config = yaml.safe_load(JUDGE_CONFIG.read_text(encoding="utf-8"))[JUDGE]
    return logprob_parser(completion, **config["completion_parser_kwargs"])[0]


def as_chatml(messages):
    """Our messages as the dicts alpaca_eval's prompt_to_chatml builds."""
    return [
        {"content": m.content, "role": ROLE[m.type], **({"name": m.name} if m.name else {})}
        for m in messages
    ]


def same(ours, theirs, rel=1e-12):
    if isinstance(theirs, float) and math.isnan(theirs):
        return math.isnan(ours)
    return ours == pytest.approx(theirs, rel=rel, abs=1e-12)


# Loading


def test_reference_outputs_are_the_805_instructions(reference, annotations) -> None:
    assert len(reference) == 805
    assert [r["instruction"] for r in reference] == [a["instruction"] for a in annotations]
    assert [r["output"] for r in reference] == [a["output_1"] for a in annotations]


def test_template_is_alpaca_evals(template, ae_annotator) -> None:
    assert template == ae_annotator.annotators[JUDGE].prompt_template


def test_missing_files_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"gpt4_1106_preview_model_outputs\.json"):
        evaluate.load_reference_outputs(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"alpaca_eval_clf\.txt"):
        judge.load_judge_template(tmp_path)


# The judge's prompt


def alpaca_eval_messages(template, instruction, output_1, output_2):
    """What alpaca_eval's make_prompts and openai_completions send for one pair."""
    row = pd.DataFrame([{"instruction": instruction, "output_1": output_1, "output_2": output_2}])
    prompts, _ = ae_utils.make_prompts(row, template)
    return ae_utils.prompt_to_chatml(prompts[0].strip())


TRICKY_PAIRS = [
    ("Fill in {output_2} and {x}", "{output_1} {}", "def f():\n    return {'a': 1}"),
    ("  padded  \n", "\n\n  leading and trailing  \n", "\t"),
    ("Say <|im_end|> please", "Here: <|im_end|> done", "ok"),
    ("Écris « bonjour » 👋", "Bonjour ! 👋", '"""triple quotes"""'),
]


@pytest.mark.parametrize("row", [0, 1, 100, 400, 804])
def test_judge_messages_equal_alpaca_evals_for_fixture_rows(template, annotations, row) -> None:
    pair = annotations[row]
    ours = judge.judge_messages(template, pair["instruction"], pair["output_1"], pair["output_2"])
    theirs = alpaca_eval_messages(template, pair["instruction"], pair["output_1"], pair["output_2"])
    assert as_chatml(ours) == theirs
    assert [type(m) for m in ours] == [SystemMessage, HumanMessage]


@pytest.mark.parametrize(("instruction", "output_1", "output_2"), TRICKY_PAIRS)
def test_judge_messages_equal_alpaca_evals_for_tricky_texts(
    template, instruction, output_1, output_2
) -> None:
    ours = judge.judge_messages(template, instruction, output_1, output_2)
    assert as_chatml(ours) == alpaca_eval_messages(template, instruction, output_1, output_2)


def test_chatml_roles_and_names_as_alpaca_eval_reads_them() -> None:
    prompt = (
        "<|im_start|>system\nBe brief.\n<|im_end|>\n"
        "<|im_start|>system name=example_user\nKnock knock.\n<|im_end|>\n"
        "<|im_start|>system name=example_assistant\nWho's there?\n<|im_end|>\n"
        "<|im_start|>user\nOrange.\n<|im_end|>"
    )
    ours = judge.judge_messages(prompt, "unused", "unused", "unused")
    assert as_chatml(ours) == ae_utils.prompt_to_chatml(prompt)


@pytest.mark.parametrize(
    "bad_template",
    [
        "<|im_start|>user\n{instruction} {reference}\n<|im_end|>",
        "<|im_start|>user\n{output_1} {output_1}\n<|im_end|>",
        "plain text {instruction}",
        "<|im_start|>narrator\n{instruction}\n<|im_end|>",
    ],
)
def test_bad_templates_are_refused(bad_template) -> None:
    with pytest.raises(ValueError, match=r"template|chat-ml"):
        judge.judge_messages(bad_template, "i", "a", "b")


# The order of the outputs


def test_is_swapped_is_alpaca_evals_choice_for_every_instruction(reference, ae_annotator) -> None:
    switcher = ae_annotator.annotators[JUDGE].processors[0]
    frame = pd.DataFrame(
        [{"instruction": r["instruction"], "output_1": "a", "output_2": "b"} for r in reference]
    )
    theirs = switcher.preprocess(frame)[switcher._switch_column].tolist()
    ours = [judge.is_swapped(r["instruction"]) for r in reference]
    assert ours == theirs
    assert 300 < sum(ours) < 505


def test_is_swapped_explains_the_published_annotations(annotations) -> None:
    judged = [a for a in annotations if a["raw_completion"] is not None]
    assert len(judged) == 802

    def agreement(seed):
        return sum(
            judge.unswap(
                judge.preference_from_logprobs(top_logprobs(a["raw_completion"])),
                judge.is_swapped(a["instruction"], seed=seed),
            )
            == pytest.approx(float(a["preference"]), abs=1e-9)
            for a in judged
        )

    assert agreement(judge.SEED) == len(judged)
    # SingleAnnotator's own default seed would explain only about half of them.
    assert agreement(123) < 0.6 * len(judged)


# Parsing the judge


def test_logprobs_give_alpaca_evals_preference(annotations) -> None:
    judged = [a for a in annotations if a["raw_completion"] is not None]
    for pair in judged:
        raw = pair["raw_completion"]
        ours = judge.preference_from_logprobs(top_logprobs(raw))
        assert ours == pytest.approx(ae_parse(raw), abs=1e-12)


def completion(top):
    return {"logprobs": {"content": [{"top_logprobs": top}]}}


@pytest.mark.parametrize(
    "top",
    [
        [{"token": "M", "logprob": -0.02}, {"token": "m", "logprob": -4.0}],
        [
            {"token": "m", "logprob": -0.7},
            {"token": "The", "logprob": -0.8},
            {"token": "M", "logprob": -0.69},
        ],
        [{"token": "M", "logprob": -0.1}, {"token": "Both", "logprob": -3.0}],
        [{"token": "m", "logprob": -5.0}],
        [
            {"token": "m", "logprob": -1.0},
            {"token": "m", "logprob": -3.0},
            {"token": "M", "logprob": -2.0},
        ],
    ],
)
def test_logprob_parsing_matches_alpaca_eval(top) -> None:
    theirs = ae_parse(completion(top))
    assert judge.preference_from_logprobs(top) == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize(
    "top",
    [
        [],
        [
            {"token": "The", "logprob": -0.1},
            {"token": " m", "logprob": -1.0},
            {"token": "M ", "logprob": -2.0},
        ],
        [{"token": "m"}],
        [{"logprob": -1.0}],
        [None],
        ["m"],
    ],
)
def test_logprobs_without_a_usable_token_give_none(top) -> None:
    # alpaca_eval gets NaN or an error for these, and drops the pair.
    try:
        theirs = ae_parse(completion(top))
    except (KeyError, TypeError):
        theirs = math.nan
    assert math.isnan(theirs)
    assert judge.preference_from_logprobs(top) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("m", 1.0),
        ("M", 2.0),
        (" M\n", 2.0),
        ("\nm ", 1.0),
        ("Model m", None),
        ("", None),
        ("MM", None),
    ],
)
def test_preference_from_text(text, expected) -> None:
    assert judge.preference_from_text(text) == expected


@pytest.mark.parametrize(
    ("preference", "swapped", "expected"), [(1.2, True, 1.8), (1.2, False, 1.2), (2.0, True, 1.0)]
)
def test_unswap(preference, swapped, expected) -> None:
    assert judge.unswap(preference, swapped) == pytest.approx(expected)


def test_whole_judging_loop_equals_alpaca_evals_annotator(
    template, reference, annotations, ae_annotator, monkeypatch
) -> None:
    """alpaca_eval annotates alpaca-7b with a judge that replays the published replies."""
    replies = {}
    ours = {}
    for pair in annotations:
        instruction, baseline, model = pair["instruction"], pair["output_1"], pair["output_2"]
        if baseline == model:
            ours[instruction] = 1.5  # the documented shortcut: no judge call
            continue
        swapped = judge.is_swapped(instruction)
        first, second = (model, baseline) if swapped else (baseline, model)
        messages = judge.judge_messages(template, instruction, first, second)
        replies[json.dumps(as_chatml(messages))] = pair["raw_completion"]
        preference = judge.preference_from_logprobs(top_logprobs(pair["raw_completion"]))
        ours[instruction] = judge.unswap(preference, swapped)

    def replaying_judge(prompts, **kwargs):
        # A prompt that differs from ours by one byte is a KeyError here.
        chats = [ae_utils.prompt_to_chatml(p.strip()) for p in prompts]
        return {"completions_all": [replies[json.dumps(chat)] for chat in chats]}

    monkeypatch.setattr(ae_base, "get_fn_completions", lambda name: replaying_judge)
    annotator = PairwiseAnnotator(annotators_config=JUDGE, caching_path=None)
    model_outputs = [
        {"instruction": a["instruction"], "output": a["output_2"], "generator": a["generator_2"]}
        for a in annotations
    ]
    annotated = annotator.annotate_head2head(outputs_1=reference, outputs_2=model_outputs)

    theirs = {a["instruction"]: a["preference"] for a in annotated}
    assert len(theirs) == len(ours) == 805
    for instruction, preference in theirs.items():
        assert ours[instruction] == pytest.approx(preference, abs=1e-12)
    published = {a["instruction"]: float(a["preference"]) for a in annotations}
    for instruction, preference in ours.items():
        assert preference == pytest.approx(published[instruction], abs=1e-9)


# Win rate


def test_winrate_equals_alpaca_eval_and_the_leaderboard(annotations, alpaca_7b_row) -> None:
    ours = metrics.winrate_metrics([float(a["preference"]) for a in annotations])
    theirs = get_winrate(annotations)
    assert set(ours) == set(theirs)
    for field, value in theirs.items():
        assert same(ours[field], float(value)), field
    assert ours["win_rate"] == pytest.approx(float(alpaca_7b_row["win_rate"]), abs=1e-3)


@pytest.mark.parametrize(
    "preferences",
    [
        [1.0, 2.0, 1.5, 1.2, 1.8],
        [1.0, None, 2.0, float("nan")],
        [0, 0.0, 1.0, 2.0],  # 0 is the old encoding of a draw
        [1.4999999, 1.5000001, 1.5, 1.75],
        [2.5, 0.3, 1.0, 1.9],  # out of range: dropped
        [1.7],
        [],
    ],
)
def test_winrate_edge_cases_equal_alpaca_eval(preferences) -> None:
    ours = metrics.winrate_metrics(preferences)
    theirs = get_winrate([{"preference": p} for p in preferences]) if preferences else None
    if theirs is None:
        assert ours["n_total"] == 0
        assert math.isnan(ours["win_rate"])
        return
    for field, value in theirs.items():
        assert same(ours[field], float(value)), (field, ours[field], value)


# Length-controlled win rate


@pytest.fixture
def ae_length_controlled(tmp_path, monkeypatch):
    """alpaca_eval's get_length_controlled_winrate, downloading a local df_gamed.csv."""

    def run(annotations, glm_name, gamed_rows=None, difficulty=None):
        n = len(annotations)
        if gamed_rows is None:
            # The minimal and noreg fits read only instruction_difficulty from this file.
            difficulty = np.zeros(n) if difficulty is None else difficulty
            gamed_rows = [
                {"index": i, "preference": 0.5, "std_delta_len": 0.0, "instruction_difficulty": d}
                for i, d in enumerate(difficulty)
            ]
        path = tmp_path / "df_gamed.csv"
        pd.DataFrame(
            [{"model": "gamed", "not_gamed_baseline": False, **r} for r in gamed_rows]
        ).to_csv(path, index=False)
        monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda **kwargs: str(path))
        # alpaca_eval switches on scikit-learn's metadata routing globally (keep it local) and
        # uses its API deprecated since 1.8 (not ours to fix).
        with sklearn.config_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return glm_winrate.get_length_controlled_winrate(
                pd.DataFrame(annotations), glm_name=glm_name, save_weights_dir=None
            )

    return run


def assert_same_lc(ours, theirs) -> None:
    assert ours["length_controlled_winrate"] == pytest.approx(
        theirs["length_controlled_winrate"], rel=1e-9
    )
    assert ours["lc_standard_error"] == pytest.approx(
        theirs["lc_standard_error"], rel=1e-9, abs=1e-9
    )


def test_minimal_length_control_equals_alpaca_eval(annotations, ae_length_controlled) -> None:
    ours = metrics.length_controlled_winrate(annotations)
    assert ours["formula"] == "length_controlled_minimal"
    assert_same_lc(ours, ae_length_controlled(annotations, "length_controlled_minimal"))


def test_length_control_skips_missing_preferences_as_alpaca_eval(
    annotations, ae_length_controlled
) -> None:
    damaged = [{**a, "preference": None} if i % 37 == 0 else a for i, a in enumerate(annotations)]
    ours = metrics.length_controlled_winrate(damaged)
    assert_same_lc(ours, ae_length_controlled(damaged, "length_controlled_minimal"))
    assert ours != metrics.length_controlled_winrate(annotations)


def synthetic_difficulty_and_gamed(annotations):
    # The real files are on the Hugging Face hub only; these stand in with the same shape.
    rng = np.random.default_rng(7)
    difficulty = rng.normal(0, 1, len(annotations))
    gamed = [
        {
            "index": i,
            "preference": float(rng.uniform()),
            "std_delta_len": float(rng.normal()),
            "instruction_difficulty": float(difficulty[i]),
        }
        for _ in ("verbose", "concise")
        for i in range(len(annotations))
    ]
    by_instruction = {
        a["instruction"]: float(d) for a, d in zip(annotations, difficulty, strict=True)
    }
    return difficulty, gamed, by_instruction


def test_v1_length_control_equals_alpaca_eval_given_its_hub_files(
    annotations, ae_length_controlled
) -> None:
    _, gamed, by_instruction = synthetic_difficulty_and_gamed(annotations)
    ours = metrics.length_controlled_winrate(annotations, by_instruction, gamed_baselines=gamed)
    assert ours["formula"] == "length_controlled_v1"
    assert_same_lc(
        ours, ae_length_controlled(annotations, "length_controlled_v1", gamed_rows=gamed)
    )


def test_without_gamed_baselines_v1_is_alpaca_evals_noreg(
    annotations, ae_length_controlled
) -> None:
    difficulty, _, by_instruction = synthetic_difficulty_and_gamed(annotations)
    ours = metrics.length_controlled_winrate(annotations, by_instruction)
    assert ours["formula"] == "length_controlled_noreg"
    assert_same_lc(
        ours, ae_length_controlled(annotations, "length_controlled_noreg", difficulty=difficulty)
    )


def test_the_baseline_against_itself_is_fifty(annotations) -> None:
    itself = [
        {**a, "output_2": a["output_1"], "generator_2": a["generator_1"]} for a in annotations
    ]
    theirs = glm_winrate.get_length_controlled_winrate(pd.DataFrame(itself), save_weights_dir=None)
    ours = metrics.length_controlled_winrate(itself)
    assert ours["length_controlled_winrate"] == pytest.approx(theirs["length_controlled_winrate"])
    assert ours["lc_standard_error"] == pytest.approx(theirs["lc_standard_error"])


# A leaderboard row


def test_score_annotations_reproduces_the_leaderboard_row(annotations, alpaca_7b_row) -> None:
    as_strings = [{**a, "preference": str(a["preference"])} for a in annotations]
    row = metrics.score_annotations(as_strings)
    for field in [*WINRATE_FIELDS, "discrete_win_rate"]:
        assert row[field] == pytest.approx(float(alpaca_7b_row[field]), rel=1e-9), field
    assert row["avg_length"] == int(alpaca_7b_row["avg_length"])
    lc = metrics.length_controlled_winrate(annotations)
    assert row["length_controlled_winrate"] == lc["length_controlled_winrate"]
    assert row["formula"] == "length_controlled_minimal"
    # Not the leaderboard's length_controlled_winrate: that is length_controlled_v1, whose
    # hub-only inputs (instruction difficulty, gamed baselines) are not here.


def test_score_annotations_reproduces_the_baselines_own_row(reference) -> None:
    with LEADERBOARD.open(encoding="utf-8") as rows:
        published = next(row for row in csv.DictReader(rows) if row[""] == "gpt4_1106_preview")
    # Equal outputs: alpaca_eval records a draw without asking the judge.
    itself = [
        {
            "instruction": r["instruction"],
            "output_1": r["output"],
            "output_2": r["output"],
            "generator_1": r["generator"],
            "generator_2": r["generator"],
            "preference": 1.5,
        }
        for r in reference
    ]
    row = metrics.score_annotations(itself)
    for field in [*WINRATE_FIELDS, "discrete_win_rate", "length_controlled_winrate"]:
        assert row[field] == pytest.approx(float(published[field])), field
    assert row["avg_length"] == int(published["avg_length"])


def test_too_few_instructions_for_the_glm_says_so(annotations) -> None:
    result = metrics.length_controlled_winrate(annotations[:4])
    assert result["length_controlled_winrate"] is None
    assert result["formula"] == (
        "length_controlled_minimal (not fitted: fewer than 5 judged instructions)"
    )
    assert metrics.length_controlled_winrate(annotations[:5])["length_controlled_winrate"] > 0
