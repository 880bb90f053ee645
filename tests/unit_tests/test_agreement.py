"""Early stop's agreement tests: final answers, embedding similarity, the offline default."""

import asyncio
import logging
import socket
import sys
import threading
import time
import warnings

import pytest
import pytest_socket
from langchain_core.embeddings import Embeddings

from benchmarks.similarity import DIFFERENT_ANSWERS, PARAPHRASES, UNRELATED, pairwise
from langchain_moa.graph import agreement
from langchain_moa.graph.agreement import (
    INSTALL_HINT,
    METHODS,
    Agreement,
    EmbeddingSimilarity,
    FinalAnswers,
    MissingAgreementExtraError,
    Verdict,
    WordLlamaEmbeddings,
    acheck,
    default_embeddings,
    final_answer,
    from_options,
    min_cosine,
)


class FakeEmbeddings(Embeddings):
    """Each text's vector is looked up; unknown texts fail the test."""

    def __init__(self, vectors):
        self.vectors = vectors
        self.async_calls = 0

    def embed_documents(self, texts):
        return [list(self.vectors[text]) for text in texts]

    def embed_query(self, text):
        return list(self.vectors[text])

    async def aembed_documents(self, texts):
        self.async_calls += 1
        return self.embed_documents(texts)


# Cosines chosen to be exact in floating point: (5, 0)·(3, 4) / 25 = 0.6.
FAKE = FakeEmbeddings(
    {
        "a": (5.0, 0.0),
        "b": (3.0, 4.0),
        "a again": (2.0, 0.0),
        "opposite": (-1.0, 0.0),
        "diagonal": (1.0, 1.0),
        "diagonal again": (1.0, 1.0),
        "nothing": (0.0, 0.0),
    }
)

# --- final_answer -------------------------------------------------------------------------

GSM8K_SOLUTION = (
    "Natalia sold 48 / 2 = 24 clips in May.\n"
    "Natalia sold 48 + 24 = 72 clips altogether in April and May.\n#### 72"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GSM8K_SOLUTION, "72"),
        # The marked answer wins over a later number.
        ("#### 18\nThat is 9 eggs at 2 dollars each.", "18"),
        ("#### **$1,234.50**", "1234.5"),
        ("Janet makes 9 * 2 = $18.\nThe answer is 18.", "18"),
        ("So the answer is 18 dollars, from 9 * 2.", "18"),
        ("**Answer:** 42", "42"),
        ("The answer isn't 5; it is 6.", "6"),
        ("The final answer is: the total is 16 - 3 - 4 = 9", "16"),
        (r"First \boxed{3}, corrected: $\boxed{18}$ and 7 more words 5", "18"),
        (r"\boxed{18.0}", "18"),
        (r"\boxed{1{,}000}", "1000"),
        (r"\boxed{18 \text{ dollars}} after 2 steps", "18"),
        # A boxed answer that is not one number is kept as written, spaces removed.
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"The choice is \boxed{ B }.", "B"),
        (r"\boxed{} then 7", "7"),
        ("1,000", "1000"),
        ("She has 1,000,000 dollars.", "1000000"),
        ("It costs 18.0.", "18"),
        ("0.50", "0.5"),
        ("The temperature fell to -5 degrees.", "-5"),
        ("The temperature fell to \u22125 degrees.", "-5"),
        ("-0", "0"),
        ("From 3-5 people", "5"),
        ("No number here.", None),
        ("", None),
    ],
)
def test_final_answer(text, expected) -> None:
    assert final_answer(text) == expected


# --- FinalAnswers ---------------------------------------------------------------------------


def test_equal_final_answers_agree() -> None:
    verdict = FinalAnswers()([GSM8K_SOLUTION, "The answer is 72.", r"$\boxed{72.0}$"])
    assert verdict == Verdict(agree=True, score=1.0, detail="3 of 3 final answers equal (72)")


def test_one_different_answer_disagrees() -> None:
    verdict = FinalAnswers()([GSM8K_SOLUTION, "#### 72", "#### 144"])
    assert not verdict.agree
    assert verdict.score == pytest.approx(2 / 3)
    assert verdict.detail == "2 of 3 final answers equal (72), 3 needed"


def test_a_text_without_an_answer_disagrees() -> None:
    verdict = FinalAnswers()(["#### 72", "#### 72", "I could not solve it."])
    assert not verdict.agree
    assert verdict.detail == "2 of 3 final answers equal (72), 3 needed; 1 without a final answer"


def test_empty_texts_have_no_answer() -> None:
    verdict = FinalAnswers()(["", ""])
    assert verdict == Verdict(agree=False, score=0.0, detail="no final answer in 2 texts")


def test_a_partial_majority_agrees_when_allowed() -> None:
    texts = ["#### 72", "#### 72", "#### 144"]
    assert FinalAnswers(min_agreeing=2 / 3)(texts).agree
    assert FinalAnswers(min_agreeing=0.6)(texts).agree
    assert not FinalAnswers(min_agreeing=0.7)(texts).agree


def test_a_text_without_an_answer_counts_against_a_partial_majority() -> None:
    texts = ["#### 72", "#### 72", "no idea", "none either"]
    assert not FinalAnswers(min_agreeing=0.75)(texts).agree
    assert FinalAnswers(min_agreeing=0.5)(texts).agree


def test_a_tie_never_agrees() -> None:
    verdict = FinalAnswers(min_agreeing=0.5)(["#### 72", "#### 72", "#### 144", "#### 144"])
    assert not verdict.agree
    assert verdict.score == 0.5
    assert verdict.detail == "tie: 2 of 4 final answers each for 72 and 144"


def test_one_answer_is_never_a_majority() -> None:
    texts = ["#### 72", "#### 1", "#### 2", "#### 3"]
    assert FinalAnswers().needed(4) == 4
    assert FinalAnswers(min_agreeing=0.1).needed(4) == 2
    assert not FinalAnswers(min_agreeing=0.1)(texts).agree


@pytest.mark.parametrize("check", [FinalAnswers(), EmbeddingSimilarity(FAKE, threshold=-1)])
@pytest.mark.parametrize("texts", [[], ["#### 72"]])
def test_fewer_than_two_texts_never_agree(check, texts) -> None:
    verdict = check(texts)
    assert not verdict.agree
    assert verdict.score is None
    assert "needs at least 2" in verdict.detail


@pytest.mark.parametrize("check", [FinalAnswers(), EmbeddingSimilarity(FAKE)])
def test_a_single_string_is_refused(check) -> None:
    with pytest.raises(TypeError, match="single string"):
        check("#### 72")


def test_long_answers_are_shortened_in_the_detail() -> None:
    box = r"\boxed{" + "x + " * 30 + "1 + 2}"
    verdict = FinalAnswers()([box, box])
    assert verdict.agree
    assert len(verdict.detail) < 80
    assert verdict.detail.endswith("...)")


# --- EmbeddingSimilarity ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "agree"), [(0.5, True), (0.6, True), (0.6 + 1e-6, False), (0.9, False)]
)
def test_the_threshold_is_inclusive(threshold, agree) -> None:
    verdict = EmbeddingSimilarity(FAKE, threshold=threshold)(["a", "b"])
    assert verdict.agree is agree
    assert verdict.score == pytest.approx(0.6)


def test_the_details_name_the_least_similar_pair() -> None:
    check = EmbeddingSimilarity(FAKE, threshold=0.9)
    assert check(["a", "a again"]).detail == "min cosine 1.000 >= 0.9"
    verdict = check(["a", "a again", "b"])
    assert not verdict.agree
    assert verdict.detail == "min cosine 0.600 < 0.9 (texts 1 and 3)"


def test_identical_texts_agree_at_threshold_one() -> None:
    # 1/sqrt(2) squared twice sums to a hair under 1 in floating point.
    verdict = EmbeddingSimilarity(FAKE, threshold=1)(["diagonal", "diagonal again"])
    assert verdict.agree
    assert verdict.score == pytest.approx(1.0)


def test_opposite_texts_agree_only_at_threshold_minus_one() -> None:
    assert EmbeddingSimilarity(FAKE, threshold=-1)(["a", "opposite"]).agree
    assert not EmbeddingSimilarity(FAKE, threshold=-0.99)(["a", "opposite"]).agree


def test_a_zero_vector_is_similar_to_nothing() -> None:
    assert min_cosine([[0.0, 0.0], [1.0, 0.0]]) == (0.0, 0, 1)
    assert not EmbeddingSimilarity(FAKE, threshold=0.5)(["a", "nothing"]).agree


def test_min_cosine_needs_two_vectors() -> None:
    with pytest.raises(ValueError, match="at least 2 vectors"):
        min_cosine([[1.0]])


@pytest.mark.parametrize("blank", ["", "  \n"])
def test_an_empty_text_never_agrees(blank) -> None:
    verdict = EmbeddingSimilarity(FAKE, threshold=-1)(["a", blank])
    assert verdict == Verdict(agree=False, score=None, detail="text 2 of 2 is empty")


async def test_acheck_embeds_asynchronously() -> None:
    fake = FakeEmbeddings(FAKE.vectors)
    verdict = await acheck(EmbeddingSimilarity(fake, threshold=0.5), ["a", "b"])
    assert verdict.agree
    assert fake.async_calls == 1


async def test_acheck_calls_a_test_without_acall() -> None:
    verdict = await acheck(FinalAnswers(), ["#### 1", "#### 1"])
    assert verdict.agree


def test_both_tests_are_agreements() -> None:
    assert isinstance(FinalAnswers(), Agreement)
    assert isinstance(EmbeddingSimilarity(FAKE), Agreement)


# --- Validation and names --------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [-1.01, 1.01, float("nan"), "0.9", True, None])
def test_a_bad_threshold_is_refused(threshold) -> None:
    with pytest.raises(ValueError, match="threshold"):
        EmbeddingSimilarity(FAKE, threshold=threshold)


@pytest.mark.parametrize("threshold", [-1, 0, 1, 0.85])
def test_thresholds_in_range_are_accepted(threshold) -> None:
    assert EmbeddingSimilarity(FAKE, threshold=threshold).threshold == threshold


@pytest.mark.parametrize("min_agreeing", [0, -0.5, 1.01, float("nan"), "all"])
def test_a_bad_min_agreeing_is_refused(min_agreeing) -> None:
    with pytest.raises(ValueError, match="min_agreeing"):
        FinalAnswers(min_agreeing=min_agreeing)


def test_embeddings_must_be_embeddings() -> None:
    with pytest.raises(ValueError, match="embeddings"):
        EmbeddingSimilarity(embeddings="wordllama")


def test_from_options_builds_each_method() -> None:
    assert from_options("final_answer") == FinalAnswers()
    assert from_options("final_answer", min_agreeing=0.5) == FinalAnswers(min_agreeing=0.5)
    built = from_options("embedding", threshold=0.85)
    assert built == EmbeddingSimilarity(threshold=0.85)
    assert set(METHODS) == {"final_answer", "embedding"}


def test_from_options_names_an_unknown_method() -> None:
    with pytest.raises(ValueError, match=r"'cosine'.*embedding, final_answer"):
        from_options("cosine")


def test_from_options_names_an_unknown_option() -> None:
    with pytest.raises(ValueError, match=r"'thresh'.*valid options: embeddings, threshold"):
        from_options("embedding", thresh=0.8)
    with pytest.raises(ValueError, match=r"'threshold'.*valid options: min_agreeing"):
        from_options("final_answer", threshold=0.8)


def test_from_options_checks_values() -> None:
    with pytest.raises(ValueError, match="threshold"):
        from_options("embedding", threshold=2)


# --- The offline default ------------------------------------------------------------------------


def test_a_missing_extra_names_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wordllama", None)
    with pytest.raises(MissingAgreementExtraError, match=r"langchain-moa\[agreement\]"):
        WordLlamaEmbeddings()
    with pytest.raises(ImportError, match=r"pip install 'langchain-moa\[agreement\]'"):
        EmbeddingSimilarity()
    # A caller's own embeddings need no extra.
    assert EmbeddingSimilarity(FAKE).embeddings is FAKE
    assert INSTALL_HINT in str(MissingAgreementExtraError(INSTALL_HINT))


def test_loading_keeps_the_root_logger_and_uses_the_bundled_files(monkeypatch, tmp_path) -> None:
    # A stand-in package that does what wordllama's import does to logging.
    package = tmp_path / "wordllama"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import logging\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "class WordLlama:\n"
        "    @staticmethod\n"
        "    def load(**kwargs):\n"
        "        return kwargs\n"
    )
    # Recorded first so that the real package (or its absence) comes back afterwards.
    monkeypatch.setitem(sys.modules, "wordllama", None)
    del sys.modules["wordllama"]
    monkeypatch.syspath_prepend(str(tmp_path))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    level = root.level
    try:
        root.setLevel(logging.WARNING)
        loaded = agreement._load_wordllama()
        assert root.handlers == []
        assert root.level == logging.WARNING
    finally:
        root.setLevel(level)
    assert loaded == {"cache_dir": package, "disable_download": True}


def test_default_embeddings_loads_once_across_threads(monkeypatch) -> None:
    loads = []

    def slow_load():
        loads.append(1)
        time.sleep(0.05)
        return object()

    monkeypatch.setattr(agreement, "_default", None)
    monkeypatch.setattr(agreement, "_load_wordllama", slow_load)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(default_embeddings())) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1
    assert len({id(result) for result in results}) == 1
    assert isinstance(results[0], WordLlamaEmbeddings)


@pytest.mark.disable_socket
@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_wordllama_loads_offline() -> None:
    # Any download attempt would raise here; the tokenizer's fallback to huggingface.co
    # announces itself with a warning before it tries.
    with pytest.raises(pytest_socket.SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embeddings = WordLlamaEmbeddings()
        vectors = embeddings.embed_documents(["The capital of France is Paris.", ""])
    assert len(vectors[0]) == 256
    assert sum(x * x for x in vectors[0]) == pytest.approx(1.0)
    assert vectors[1] == [0.0] * 256
    assert embeddings.embed_documents([]) == []
    assert embeddings.embed_query("Paris") == embeddings.embed_documents(["Paris"])[0]


async def test_wordllama_embeds_asynchronously() -> None:
    embeddings = default_embeddings()
    vectors = await embeddings.aembed_documents(["Paris", "Lyon"])
    assert vectors == embeddings.embed_documents(["Paris", "Lyon"])


# The sets benchmarks/similarity.py measures (its table is in docs/strategies.md); the tests
# assert the orderings, not the numbers.
def test_paraphrases_are_more_similar_than_different_answers_or_unrelated_texts() -> None:
    paraphrases = min(pairwise(PARAPHRASES))
    assert paraphrases > max(pairwise(DIFFERENT_ANSWERS))
    assert paraphrases > max(pairwise(UNRELATED))
    assert paraphrases > max(pairwise([PARAPHRASES[0], *UNRELATED]))
    assert max(pairwise(DIFFERENT_ANSWERS)) > max(pairwise(UNRELATED))


def test_the_default_embedding_separates_paraphrases_from_unrelated_texts() -> None:
    paraphrases = EmbeddingSimilarity()(PARAPHRASES)
    unrelated = EmbeddingSimilarity()(UNRELATED)
    assert paraphrases.score is not None
    assert unrelated.score is not None
    assert paraphrases.score > unrelated.score
    # A threshold between the two separates them.
    between = (paraphrases.score + unrelated.score) / 2
    assert EmbeddingSimilarity(threshold=between)(PARAPHRASES).agree
    assert not EmbeddingSimilarity(threshold=between)(UNRELATED).agree


def test_the_default_is_shared() -> None:
    assert default_embeddings() is default_embeddings()
    assert asyncio.iscoroutinefunction(EmbeddingSimilarity.acall)
