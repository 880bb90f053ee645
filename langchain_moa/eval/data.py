"""Where the benchmark data is, and reading it.

The package never downloads data and never copies it: users pass the folder
that holds ``alpaca_eval/``, ``mt_bench/``, ``flask/`` and ``gsm8k/``, or set
``MOA_DATA_DIR``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "MOA_DATA_DIR"
"""Environment variable naming the data folder when no path is passed."""


def data_dir(path: str | Path | None = None) -> Path:
    """The data folder: ``path`` if given, else ``$MOA_DATA_DIR``.

    Raises:
        FileNotFoundError: neither is set, or the folder does not exist.
    """
    chosen = path if path is not None else os.environ.get(DATA_DIR_ENV)
    if not chosen:
        msg = f"no benchmark data folder: pass --data-dir or set {DATA_DIR_ENV}"
        raise FileNotFoundError(msg)
    folder = Path(chosen)
    if not folder.is_dir():
        msg = f"benchmark data folder not found: {folder}"
        raise FileNotFoundError(msg)
    return folder


def read_json(path: Path) -> Any:
    """A JSON file's content; a missing file's error names it."""
    if not path.is_file():
        msg = f"data file not found: {path}"
        raise FileNotFoundError(msg)
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every row of a JSONL file; a missing file's error names it."""
    if not path.is_file():
        msg = f"data file not found: {path}"
        raise FileNotFoundError(msg)
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
