"""What a benchmark is to ``moa eval``: one record, defined in the benchmark's own module.

`langchain_moa.eval.registry` lists the records; the command line, the ablation grid and the
report read everything benchmark-specific from them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_moa.eval.data import DataFile
from langchain_moa.stacks.spec import AgreementMethod

RunFunction = Callable[..., Coroutine[Any, Any, dict[str, Any]]]
"""``run(model, data_dir, out_dir, *, [judge,] limit, concurrency, [subset])``: answer the
items (and have ``judge`` grade them, for a judged benchmark), resumably, and return the
metrics; ``subset`` (a `Subset`'s name) only for a benchmark that has subsets."""

ReportSection = Callable[[Mapping[str, Mapping[str, Any]], Path], str]
"""Extra report text from ``{run: this benchmark's metrics}``; may write files (plots) into
the folder it is given."""


def model_temperature(_item: Mapping[str, Any]) -> float | None:
    """Every item at the model's own temperature."""
    return None


@dataclass(frozen=True)
class Generation:
    """How the model under evaluation answers.

    Attributes:
        max_tokens: The longest answer per call, as in the reference code.
        temperature: The model's sampling temperature (MoA's reference code samples at 0.7).
        item_temperature: The temperature one item is answered at, overriding the model's
            (MT-Bench's per-category table); None keeps the model's.
    """

    max_tokens: int
    temperature: float = 0.7
    item_temperature: Callable[[Mapping[str, Any]], float | None] = model_temperature


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge is called: what the benchmark's reference code asks of it."""

    temperature: float
    max_tokens: int


@dataclass(frozen=True)
class Subset:
    """A named part of a benchmark's items, run on its own (FLASK's hard instances).

    Attributes:
        name: The ``--subset`` value; its results go to ``OUT/RUN/FOLDER_NAME``, apart from
            the whole set's, and the report shows them as run ``RUN (NAME)``.
        files: The data files its run reads, in place of the benchmark's.
        description: What it is, for ``--help``.
    """

    name: str
    files: tuple[DataFile, ...]
    description: str


@dataclass(frozen=True)
class Benchmark:
    """One benchmark, everything ``moa eval`` needs to know about it.

    Attributes:
        name: The command, ``moa eval NAME``.
        folder: Its folder in a data folder and in the results (``OUT/RUN/FOLDER``).
        title: Its name for people.
        files: The data files its run reads, each shipped, downloaded or from ``--data-dir``
            (found, or downloaded, before any model starts).
        run: Its `RunFunction`.
        headline: The metric the ablation table ranks configurations by.
        generation: How answers are generated.
        judge: How its judge is called; None for a judge-free benchmark.
        columns: Its columns in the report's table: (heading, metric key).
        requires: Modules of the ``eval`` extra it needs (checked before any item runs).
        report: Extra report text for it, or None.
        subsets: Parts of its items that ``--subset`` runs instead of all of them.
        rescore: ``rescore(results_folder, metrics)``: the metrics the report shows for a
            saved run, recomputed from its records where that now gives a better answer
            (AlpacaEval: the LC win rate once alpaca_eval's hub files can be had); None
            shows them as saved.
        agreement: How early stop tests a layer's answers on it (the ablation's early-stop
            rows): ``"final_answer"`` for short answers, ``"embedding"`` for open ones.
    """

    name: str
    folder: str
    title: str
    files: tuple[DataFile, ...]
    run: RunFunction
    headline: str
    generation: Generation
    judge: JudgeSettings | None = None
    columns: tuple[tuple[str, str], ...] = ()
    requires: tuple[str, ...] = ()
    report: ReportSection | None = None
    subsets: tuple[Subset, ...] = ()
    rescore: Callable[[Path, dict[str, Any]], dict[str, Any]] | None = None
    agreement: AgreementMethod = "embedding"

    def subset(self, name: str) -> Subset:
        """The subset called ``name``.

        Raises:
            ValueError: It has none of that name; the message lists them.
        """
        for candidate in self.subsets:
            if candidate.name == name:
                return candidate
        names = ", ".join(s.name for s in self.subsets) or "none"
        msg = f"{self.name} has no subset {name!r} (subsets: {names})"
        raise ValueError(msg)

    def results_folder(self, subset: str | None = None) -> str:
        """Its folder in a run's results: ``folder``, or ``folder_SUBSET`` for a subset."""
        return self.folder if subset is None else f"{self.folder}_{self.subset(subset).name}"
