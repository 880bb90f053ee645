"""Do a layer's answers agree? The test behind early stop (adaptive depth).

A MoA stack may end before its last proposer layer once that layer's proposers agree:
another layer would mostly restate the consensus at the cost of a layer of calls. Two
tests are offered, each an `Agreement` (a callable from the layer's texts to a `Verdict`):

* `FinalAnswers`, for short-answer tasks (arithmetic, GSM8K): every text's final answer
  (see `final_answer`) is extracted and they must be equal, or at least a ``min_agreeing``
  fraction of the texts must share the most common one;
* `EmbeddingSimilarity`, for open-ended answers: every pair of texts must have an
  embedding cosine similarity of at least ``threshold``. Any LangChain `Embeddings` will
  do; the default, `WordLlamaEmbeddings`, is offline: WordLlama's static token embeddings
  (the ``agreement`` extra, weights inside the wheel), averaged over a text's tokens.

A static embedding averages words, not meaning. Measured with the default (pairwise
cosines): paraphrases of a one-sentence answer 0.87 to 0.96; the same sentence with a
different fact (Paris / Lyon / Marseille) 0.74 to 0.77; three-sentence answers with the
same content reworded 0.76 to 0.79, nearly verbatim 0.95 to 0.97; unrelated texts -0.15
to 0.36. GSM8K solutions with *different* final answers scored up to 0.89, above the same
answer reworded (0.49 to 0.66): for answers with a final number, `FinalAnswers` is the
test, not this one.

Stack files name a test and its options (``early_stop: {method: embedding, threshold:
0.85}``); `from_options` builds it, and `METHODS` lists the names.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from langchain_core.embeddings import Embeddings

from langchain_moa.graph.defence import numbers

INSTALL_HINT = "pip install 'langchain-moa[agreement]'"
"""What to run when WordLlama, the offline default embedding, is missing."""
TOLERANCE = 1e-9
"""Slack on the cosine threshold: identical texts may compute as 0.9999999999999998."""

# Unicode minus signs are minus signs (GSM8K's extraction reads them the same way).
_MINUS = str.maketrans(dict.fromkeys("\u2212\ufe63\uff0d", "-"))
_HASHES = re.compile(r"####([^\n]*)")
# "is" as a word: "the answer isn't 5" names no answer.
_ANSWER_IS = re.compile(r"\banswer\s*(?:\bis\b|:|=)([^\n]*)", re.IGNORECASE)
_BOXED = "\\boxed{"
_DETAIL_ANSWER_LENGTH = 40


class MissingAgreementExtraError(ImportError):
    """WordLlama (the ``agreement`` extra) is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Verdict:
    """Whether a layer's answers agree, and by how much.

    Attributes:
        agree: Whether the layer may be the last one.
        score: The measure compared with the test's bar (the fraction of texts sharing
            the most common final answer; the least pairwise cosine similarity), None
            where nothing could be measured (fewer than 2 texts, an empty text).
        detail: One line for metadata, e.g. ``"3 of 3 final answers equal (18)"``.
    """

    agree: bool
    score: float | None
    detail: str


@runtime_checkable
class Agreement(Protocol):
    """A test of whether one layer's answers agree."""

    def __call__(self, texts: Sequence[str]) -> Verdict:
        """The verdict on ``texts``, one layer's answers in proposer order."""
        ...


# --- Final answers ----------------------------------------------------------------------


def _boxed_contents(text: str) -> list[str]:
    # A scan rather than a pattern: the contents nest braces (\boxed{\frac{1}{2}}).
    contents = []
    start = text.find(_BOXED)
    while start != -1:
        depth, end = 1, start + len(_BOXED)
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        if not depth:
            contents.append(text[start + len(_BOXED) : end - 1])
        start = text.find(_BOXED, end)
    return contents


def _boxed_answer(content: str) -> str | None:
    found = numbers(content)
    if len(found) == 1:
        return found[0]
    # "\frac{1}{2}" or "(2, 3)" read as their first number would make different answers
    # equal; "B" has no number. Both are compared as written instead.
    return "".join(content.split()) or None


def _first_number(fragments: Sequence[str]) -> str | None:
    for fragment in fragments:
        found = numbers(fragment)
        if found:
            return found[0]
    return None


def final_answer(text: str) -> str | None:
    r"""A text's final answer, normalized, or None where it has none.

    Looked for in this order, the first found winning:

    1. the first number on the first ``####`` line that has one (GSM8K's format, the
       strict extraction of `langchain_moa.eval.gsm8k`);
    2. the last non-empty ``\boxed{...}``: its number if it holds exactly one, else its
       content with spaces removed (``\frac{1}{2}``, ``B``), so that different
       non-numeric answers stay different;
    3. the first number after the last "answer is", "answer:" or "answer =" that has one
       on its line;
    4. the text's last number (GSM8K's flexible extraction).

    Numbers are normalized as `langchain_moa.graph.defence.numbers` reads them (``1,000``
    and ``1{,}000`` are ``1000``, ``18.0`` is ``18``, ``$`` and trailing punctuation
    dropped); a Unicode minus is a minus.

    Args:
        text: One answer.

    Returns:
        The answer as a string, None for a text without a number (and without a ``\boxed``
        answer), including the empty text.
    """
    text = text.translate(_MINUS).replace("{,}", ",")
    marked = _first_number([match.group(1) for match in _HASHES.finditer(text)])
    if marked is not None:
        return marked
    for content in reversed(_boxed_contents(text)):
        boxed = _boxed_answer(content)
        if boxed is not None:
            return boxed
    stated = _first_number([match.group(1) for match in reversed(list(_ANSWER_IS.finditer(text)))])
    if stated is not None:
        return stated
    found = numbers(text)
    return found[-1] if found else None


def _too_few(texts: Sequence[str]) -> Verdict | None:
    if isinstance(texts, str):
        # A lone string is a sequence of characters, each a "text": never what was meant.
        msg = "agreement takes a sequence of texts, got a single string"
        raise TypeError(msg)
    if len(texts) < 2:  # noqa: PLR2004 - agreement is between two texts at least
        return Verdict(
            agree=False, score=None, detail=f"{len(texts)} text(s): agreement needs at least 2"
        )
    return None


def _short(answer: str) -> str:
    if len(answer) <= _DETAIL_ANSWER_LENGTH:
        return answer
    return answer[: _DETAIL_ANSWER_LENGTH - 3] + "..."


def _check_number(name: str, value: object) -> float:
    # ValueError rather than TypeError: stack files are read by pydantic validators, which
    # turn a ValueError (not a TypeError) into an error that names the file's field.
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name} must be a number, got {value!r}"
        raise ValueError(msg)  # noqa: TRY004 - see the comment above
    return float(value)


@dataclass(frozen=True)
class FinalAnswers:
    """Agree when every text has an extracted final answer and they are all equal.

    Final answers are read by `final_answer`. With ``min_agreeing`` below 1, enough texts
    sharing the most common answer suffice; a text without a final answer counts
    against agreement, and a tie for the most common answer never agrees. At least 2
    texts must share the answer whatever ``min_agreeing`` says. The verdict's score is
    the fraction of texts that share the most common answer.

    Attributes:
        min_agreeing: The fraction of texts that must share the most common answer, in
            (0, 1]; 1.0 (the default) needs all of them.

    Raises:
        ValueError: ``min_agreeing`` is not a number in (0, 1].
    """

    min_agreeing: float = 1.0

    def __post_init__(self) -> None:
        """Check ``min_agreeing``."""
        value = _check_number("min_agreeing", self.min_agreeing)
        if not 0 < value <= 1:
            msg = f"min_agreeing must be in (0, 1], got {self.min_agreeing!r}"
            raise ValueError(msg)

    def needed(self, count: int) -> int:
        """How many of ``count`` texts must share an answer (at least 2)."""
        # The tolerance keeps 2/3 * 3 from needing a fourth text through rounding.
        return max(2, math.ceil(self.min_agreeing * count - TOLERANCE))

    def __call__(self, texts: Sequence[str]) -> Verdict:
        """Whether enough of ``texts`` share a final answer.

        Args:
            texts: One layer's answers.

        Returns:
            The verdict; its detail names the most common answer and the counts.
        """
        too_few = _too_few(texts)
        if too_few is not None:
            return too_few
        total = len(texts)
        answers = [final_answer(text) for text in texts]
        counts = Counter(answer for answer in answers if answer is not None)
        missing = answers.count(None)
        if not counts:
            return Verdict(agree=False, score=0.0, detail=f"no final answer in {total} texts")
        (answer, count), *rest = counts.most_common()
        needed = self.needed(total)
        lacking = f"; {missing} without a final answer" if missing else ""
        if rest and rest[0][1] == count:
            tied = " and ".join(_short(other) for other, n in counts.items() if n == count)
            detail = f"tie: {count} of {total} final answers each for {tied}{lacking}"
            return Verdict(agree=False, score=count / total, detail=detail)
        agree = count >= needed
        detail = f"{count} of {total} final answers equal ({_short(answer)})"
        if not agree:
            detail += f", {needed} needed{lacking}"
        return Verdict(agree=agree, score=count / total, detail=detail)


# --- Embedding similarity ---------------------------------------------------------------


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    # A zero vector has no direction: it is similar to nothing (cosine 0).
    return [x / norm for x in vector] if norm else [0.0] * len(vector)


def min_cosine(vectors: Sequence[Sequence[float]]) -> tuple[float, int, int]:
    """The least pairwise cosine similarity, and the pair (indices) that has it.

    Args:
        vectors: At least 2 vectors of one length. A zero vector's cosine with anything
            is 0.

    Returns:
        ``(cosine, i, j)`` with ``i < j``, the first such pair in index order on a tie;
        the cosine is clamped to [-1, 1].

    Raises:
        ValueError: fewer than 2 vectors.
    """
    if len(vectors) < 2:  # noqa: PLR2004 - a pair needs two
        msg = f"a pairwise cosine needs at least 2 vectors, got {len(vectors)}"
        raise ValueError(msg)
    units = [_unit(vector) for vector in vectors]
    best: tuple[float, int, int] | None = None
    for i, a in enumerate(units):
        for j in range(i + 1, len(units)):
            cosine = max(-1.0, min(1.0, sum(x * y for x, y in zip(a, units[j], strict=True))))
            if best is None or cosine < best[0]:
                best = (cosine, i, j)
    assert best is not None  # noqa: S101 - two vectors give a pair
    return best


@dataclass(frozen=True)
class EmbeddingSimilarity:
    """Agree when every pair's cosine similarity is >= threshold.

    The verdict's score is the least pairwise cosine similarity of the texts' embeddings
    (from one ``embed_documents`` call). An empty or blank text never agrees (it has no
    answer). The comparison allows `TOLERANCE`, so that identical texts agree at a
    threshold of 1.

    Attributes:
        embeddings: Any LangChain `Embeddings`; None (the default) is `default_embeddings`,
            loaded on the first verdict.
        threshold: The least pairwise cosine similarity that agrees, in [-1, 1].

    Raises:
        ValueError: ``threshold`` is not a number in [-1, 1].
        MissingAgreementExtraError: ``embeddings`` is None and WordLlama is not installed
            (found when the test is made, not when the layer has run).
    """

    embeddings: Embeddings | None = None
    threshold: float = 0.9

    def __post_init__(self) -> None:
        """Check the threshold, and that the default embedding can be loaded."""
        value = _check_number("threshold", self.threshold)
        if not -1 <= value <= 1:
            msg = f"threshold must be in [-1, 1], got {self.threshold!r}"
            raise ValueError(msg)
        if self.embeddings is not None and not isinstance(self.embeddings, Embeddings):
            msg = f"embeddings must be a langchain_core Embeddings, got {self.embeddings!r}"
            raise ValueError(msg)
        if self.embeddings is None and find_spec("wordllama") is None:
            raise MissingAgreementExtraError(_missing_message())

    def _model(self) -> Embeddings:
        return self.embeddings if self.embeddings is not None else default_embeddings()

    def _precheck(self, texts: Sequence[str]) -> Verdict | None:
        too_few = _too_few(texts)
        if too_few is not None:
            return too_few
        for index, text in enumerate(texts, 1):
            if not text.strip():
                detail = f"text {index} of {len(texts)} is empty"
                return Verdict(agree=False, score=None, detail=detail)
        return None

    def _judge(self, vectors: Sequence[Sequence[float]]) -> Verdict:
        cosine, i, j = min_cosine(vectors)
        if cosine >= self.threshold - TOLERANCE:
            detail = f"min cosine {cosine:.3f} >= {self.threshold:g}"
            return Verdict(agree=True, score=cosine, detail=detail)
        detail = f"min cosine {cosine:.3f} < {self.threshold:g} (texts {i + 1} and {j + 1})"
        return Verdict(agree=False, score=cosine, detail=detail)

    def __call__(self, texts: Sequence[str]) -> Verdict:
        """Whether every pair of ``texts`` is similar enough.

        Args:
            texts: One layer's answers.

        Returns:
            The verdict; a disagreeing one names the least similar pair (1-based).
        """
        early = self._precheck(texts)
        if early is not None:
            return early
        return self._judge(self._model().embed_documents(list(texts)))

    async def acall(self, texts: Sequence[str]) -> Verdict:
        """`__call__` with the embeddings' ``aembed_documents`` (a thread for WordLlama)."""
        early = self._precheck(texts)
        if early is not None:
            return early
        return self._judge(await self._model().aembed_documents(list(texts)))


async def acheck(agreement: Agreement, texts: Sequence[str]) -> Verdict:
    """``agreement(texts)`` from async code: its ``acall`` where it has one.

    `EmbeddingSimilarity` embeds without blocking the event loop that way; a test
    without ``acall`` (`FinalAnswers`, which only reads the texts) is called directly.

    Args:
        agreement: The test.
        texts: One layer's answers.

    Returns:
        The verdict.
    """
    acall = getattr(agreement, "acall", None)
    if acall is not None:
        verdict: Verdict = await acall(texts)
        return verdict
    return agreement(texts)


# --- The offline default embedding --------------------------------------------------------


def _missing_message() -> str:
    return f"the offline default embedding needs wordllama (the agreement extra): {INSTALL_HINT}"


def _load_wordllama() -> Any:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        # wordllama calls logging.basicConfig(level=INFO) when imported, which would make
        # every library's INFO records (httpx logs each request) print to stderr; the
        # root logger is put back as it was.
        import wordllama  # type: ignore[import-untyped]  # noqa: PLC0415 - the optional extra
    except ImportError as error:
        raise MissingAgreementExtraError(_missing_message()) from error
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    # Upstream flaw (wordllama 0.4): WordLlama.load() looks for the bundled tokenizer
    # config under wordllama/tokenizer/, but the wheel ships it in wordllama/tokenizers/,
    # so it would download it from huggingface.co. Its cache folder layout is
    # <cache_dir>/{weights,tokenizers}/, so the package's own folder as the cache finds
    # both bundled files; disable_download makes a future layout change an error rather
    # than a silent download.
    package = Path(wordllama.__file__).parent
    return wordllama.WordLlama.load(cache_dir=package, disable_download=True)


class WordLlamaEmbeddings(Embeddings):
    """WordLlama's 256-dimensional static embeddings, offline (the ``agreement`` extra).

    The ``l2_supercat`` model bundled in the ``wordllama`` wheel (MIT): token embeddings
    taken from large language models' input layers, averaged over a text's tokens. No
    download, loads in well under a second, embeds thousands of texts a second on a CPU.
    Vectors are returned at unit length (an empty text's is all zeros).

    Use `default_embeddings` for the shared instance.

    Raises:
        MissingAgreementExtraError: WordLlama is not installed.
    """

    def __init__(self) -> None:
        """Load the bundled model (no network)."""
        self._model = _load_wordllama()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed each text.

        Args:
            texts: The texts.

        Returns:
            One unit-length vector per text, in order.
        """
        if not texts:
            # WordLlama reads an empty batch's first element.
            return []
        # Normalized here, not by WordLlama: its norm=True divides an empty text's zero
        # vector by zero.
        vectors = self._model.embed(texts, norm=False, return_np=False)
        return [_unit(vector) for vector in vectors]

    def embed_query(self, text: str) -> list[float]:
        """Embed one text, as `embed_documents` does.

        Args:
            text: The text.

        Returns:
            Its unit-length vector.
        """
        return self.embed_documents([text])[0]


_default: Embeddings | None = None
_default_lock = threading.Lock()


def default_embeddings() -> Embeddings:
    """The process's shared `WordLlamaEmbeddings`, loaded on the first call (thread-safe).

    Raises:
        MissingAgreementExtraError: WordLlama is not installed.
    """
    global _default  # noqa: PLW0603 - one lazily loaded model per process
    if _default is None:
        with _default_lock:
            # Another thread may have loaded it while this one waited for the lock.
            if _default is None:
                _default = WordLlamaEmbeddings()
    return _default


# --- By name ------------------------------------------------------------------------------

METHODS: Mapping[str, type[FinalAnswers | EmbeddingSimilarity]] = {
    "final_answer": FinalAnswers,
    "embedding": EmbeddingSimilarity,
}
"""The tests a stack file may name (``early_stop: {method: ...}``), by name."""


def from_options(method: str, **options: Any) -> Agreement:
    """The test a stack file names, with its options.

    Args:
        method: A key of `METHODS`: ``"final_answer"`` (`FinalAnswers`) or
            ``"embedding"`` (`EmbeddingSimilarity`).
        **options: The test's fields (``min_agreeing``; ``threshold``, ``embeddings``).

    Returns:
        The test.

    Raises:
        ValueError: An unknown method or option (the message lists the valid ones), or an
            option's value out of range.
        MissingAgreementExtraError: ``"embedding"`` without ``embeddings`` and no WordLlama.
    """
    factory = METHODS.get(method)
    if factory is None:
        msg = f"unknown agreement method {method!r}; valid methods: {', '.join(sorted(METHODS))}"
        raise ValueError(msg)
    valid = {field.name for field in fields(factory)}
    unknown = sorted(set(options) - valid)
    if unknown:
        msg = (
            f"agreement method {method!r} has no option {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(sorted(valid))}"
        )
        raise ValueError(msg)
    return factory(**options)
