"""alpaca_eval's length-control files, from the Hugging Face hub as alpaca_eval fetches them.

``length_controlled_v1``, the leaderboard's LC win rate, fits the model's pairs together with
those of two length-gamed baselines, and needs each instruction's difficulty. Both come from
the Hugging Face dataset ``tatsu-lab/alpaca_eval`` (CC BY-NC 4.0, not shipped here):

- ``df_gamed.csv``: the gamed baselines' judged pairs, one row per (``model``, ``index``),
  with ``preference`` (in [0, 1]), ``std_delta_len``, ``instruction_difficulty`` and
  ``not_gamed_baseline``.
- ``instruction_difficulty.csv``: ``index`` and ``instruction_difficulty``.

``index`` is an instruction's position among the 805 (the reference outputs' order). They
are fetched with ``huggingface_hub`` into its cache (``$HF_HUB_CACHE``, ``$HF_HOME``), from
the dataset's ``main`` as alpaca_eval fetches them, so that a cache filled by either serves
both, and a filled cache serves every later run, ``HF_HUB_OFFLINE=1`` included.
"""

from __future__ import annotations

import csv
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_moa.eval.extras import INSTALL_HINT

HUB_REPO_ID = "tatsu-lab/alpaca_eval"
"""The Hugging Face dataset that alpaca_eval downloads the files from."""
HUB_REPO_TYPE = "dataset"
GAMED_FILE = "df_gamed.csv"
DIFFICULTY_FILE = "instruction_difficulty.csv"

_said: set[str] = set()
# What fetch_or_say found, by the instructions it was given: an ablation scores many runs,
# and a failed download (retried by huggingface_hub for some 20 s) is tried once.
_fetched: dict[tuple[str, ...], LengthControlFiles | None] = {}


class HubFilesUnavailableError(Exception):
    """The length-control files are neither in the Hugging Face cache nor downloadable."""


@dataclass(frozen=True)
class LengthControlFiles:
    """What ``length_controlled_v1`` needs beyond the annotations.

    Attributes:
        instruction_difficulty: Each instruction's difficulty, keyed by its text.
        gamed_baselines: ``df_gamed.csv``'s rows, in its order (the order decides which
            pairs share a cross-validation fold); None without them
            (``length_controlled_noreg``).
    """

    instruction_difficulty: dict[str, float]
    gamed_baselines: list[dict[str, Any]] | None


def hub_file(filename: str) -> Path:
    """A file of ``tatsu-lab/alpaca_eval``: from the Hugging Face cache, else downloaded.

    The cache is read first, without a request, so a filled cache serves offline runs
    and costs nothing; the download (into the same cache) is tried only when it misses.

    Raises:
        HubFilesUnavailableError: ``huggingface_hub`` is not installed, or the file is not
            cached and cannot be downloaded (offline, ``HF_HUB_OFFLINE=1``, hub errors).
    """
    try:
        # Imported here: only length control needs it.
        from huggingface_hub import hf_hub_download  # noqa: PLC0415
    except ImportError as error:
        msg = f"huggingface_hub is not installed (the eval extra): {INSTALL_HINT}"
        raise HubFilesUnavailableError(msg) from error
    try:
        return Path(
            hf_hub_download(
                repo_id=HUB_REPO_ID,
                filename=filename,
                repo_type=HUB_REPO_TYPE,
                local_files_only=True,
            )
        )
    # LocalEntryNotFoundError (both): not cached, so download it below.
    except (OSError, ValueError):
        pass
    # huggingface_hub logs each retry of a failed request; the one line said is ours.
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        return Path(
            hf_hub_download(repo_id=HUB_REPO_ID, filename=filename, repo_type=HUB_REPO_TYPE)
        )
    # Whatever stops the download (offline mode, no network, hub errors) means the same here:
    # the file is unavailable, and length control falls back to the minimal formula.
    except Exception as error:
        reason = type(error).__name__
        msg = f"{filename} is neither in the Hugging Face cache nor downloadable ({reason})"
        raise HubFilesUnavailableError(msg) from error
    finally:
        hub_logger.setLevel(level)


def load_length_control_files(instructions: Sequence[str]) -> LengthControlFiles:
    """``df_gamed.csv`` and ``instruction_difficulty.csv`` from the hub (see `hub_file`).

    Args:
        instructions: The 805 instructions in the reference outputs' order, which is the
            order ``index`` counts in.

    Raises:
        HubFilesUnavailableError: See `hub_file`; also for a file without the columns used.
    """
    return read_length_control_files(
        instructions, gamed=hub_file(GAMED_FILE), difficulty=hub_file(DIFFICULTY_FILE)
    )


def read_length_control_files(
    instructions: Sequence[str], *, gamed: Path | None, difficulty: Path | None
) -> LengthControlFiles:
    """Local copies of ``df_gamed.csv`` and ``instruction_difficulty.csv``, either optional.

    alpaca_eval's fit takes the difficulty from ``df_gamed.csv`` (its first row per
    ``index``), so this does too; ``instruction_difficulty.csv`` (which alpaca_eval reads
    for its predicted win-rate matrix) gives it for any ``index`` that ``df_gamed.csv``
    lacks, and alone it gives the difficulty without the gamed baselines. A difficulty
    table with an ``instruction`` column is keyed by it instead of by ``index``.

    Args:
        instructions: The 805 instructions in the reference outputs' order.
        gamed: ``df_gamed.csv``, or None (then ``gamed_baselines`` is None).
        difficulty: ``instruction_difficulty.csv``, or None.

    Raises:
        HubFilesUnavailableError: A file lacks a column or has a value that is not a number.
    """
    gamed_rows = [] if gamed is None else _read_csv(gamed)
    by_key: dict[int | str, float] = {}
    try:
        for row in [] if difficulty is None else _read_csv(difficulty):
            key = row["instruction"] if "instruction" in row else int(row["index"])
            by_key[key] = float(row["instruction_difficulty"])
        # alpaca_eval's drop_duplicates("index"): the first row of each instruction.
        for row in reversed(gamed_rows):
            by_key[int(row["index"])] = float(row["instruction_difficulty"])
        gamed_baselines = [
            {
                "preference": float(row["preference"]),
                "std_delta_len": float(row["std_delta_len"]),
                "instruction_difficulty": float(row["instruction_difficulty"]),
            }
            for row in gamed_rows
        ]
    except (KeyError, ValueError) as error:
        msg = f"AlpacaEval's length-control files lack a column or a number: {error}"
        raise HubFilesUnavailableError(msg) from error
    by_instruction = {key: value for key, value in by_key.items() if isinstance(key, str)}
    # Keyed by instruction text: alpaca_eval instead gives an annotations file's n-th row
    # the n-th difficulty, which is the same only for all 805 rows in the reference's order.
    for index, instruction in enumerate(instructions):
        if index in by_key:
            by_instruction[instruction] = by_key[index]
    return LengthControlFiles(by_instruction, None if gamed is None else gamed_baselines)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as table:
        rows = list(csv.DictReader(table))
    # instruction_difficulty.csv may leave its index column unnamed (pandas' to_csv).
    return [{("index" if key == "" else key): value for key, value in row.items()} for row in rows]


def length_control_inputs(
    annotations: Sequence[Mapping[str, Any]],
    files: LengthControlFiles | None,
) -> tuple[dict[str, float] | None, list[dict[str, Any]] | None, str | None]:
    """The difficulty and gamed baselines to score ``annotations`` with, or why not.

    Returns:
        ``(instruction_difficulty, gamed_baselines, note)``: both None and a one-line
        ``note`` when ``files`` is None or lacks an annotated instruction's difficulty (the
        LC win rate is then ``length_controlled_minimal``).
    """
    if files is None:
        return None, None, None
    unknown = {
        row["instruction"]
        for row in annotations
        if row["instruction"] not in files.instruction_difficulty
    }
    if unknown:
        note = (
            f"{len(unknown)} annotated instructions are not among AlpacaEval's 805, "
            "whose difficulty length_controlled_v1 needs: LC reported as length_controlled_minimal"
        )
        return None, None, note
    return files.instruction_difficulty, files.gamed_baselines, None


def fetch_or_say(instructions: Sequence[str]) -> LengthControlFiles | None:
    """`load_length_control_files`, or None after saying in one line why not.

    Once per process for the same instructions: later calls get the first one's answer.
    """
    key = tuple(instructions)
    if key not in _fetched:
        try:
            _fetched[key] = load_length_control_files(instructions)
        except HubFilesUnavailableError as error:
            say(
                f"AlpacaEval's length_controlled_v1 needs {GAMED_FILE} and {DIFFICULTY_FILE} "
                f"from the Hugging Face dataset {HUB_REPO_ID}: {error}; LC reported as "
                "length_controlled_minimal"
            )
            _fetched[key] = None
    return _fetched[key]


def say(note: str) -> None:
    """Print ``note`` on stderr, once per process: an ablation scores many runs."""
    if note not in _said:
        _said.add(note)
        print(f"moa: {note}", file=sys.stderr)
