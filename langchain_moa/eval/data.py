"""Where each benchmark file comes from, and reading it.

A file is looked for in one place, the first of:

1. A data folder the user names, ``--data-dir`` or ``$MOA_DATA_DIR``, laid out as
   ``alpaca_eval/``, ``mt_bench/``, ``flask/`` and ``gsm8k/``. It overrides everything: a file
   missing from it is an error, never a silent fallback.
2. The package: files whose licence allows it ship in ``langchain_moa/eval/datasets/``, each
   folder with the upstream licence beside them (``docs/data.md`` lists them).
3. The cache: a file that may not be shipped is downloaded on first use from its pinned
   public source, checked against its SHA-256 and kept in ``$MOA_CACHE_DIR`` (default: the
   user's cache folder, ``~/.cache/langchain-moa`` on Linux). Later uses read the cache.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from langchain_moa.eval.extras import require

DATA_DIR_ENV = "MOA_DATA_DIR"
"""Environment variable naming a data folder that overrides the packaged and cached data."""
CACHE_DIR_ENV = "MOA_CACHE_DIR"
"""Environment variable naming the folder that downloaded data is kept in."""

PACKAGED_DATA = "langchain_moa.eval.datasets"
"""The package whose folders hold the shipped data files."""
_CACHE_NAME = "langchain-moa"


@dataclass(frozen=True)
class DataFile:
    """One benchmark data file.

    Attributes:
        path: Relative to a data folder, ``/``-separated, e.g. ``"mt_bench/question.jsonl"``;
            the same in a user's folder, in the package and in the cache.
        sha256: The upstream file's SHA-256: shipped copies are verbatim, and a download
            with any other checksum is refused.
        url: Where to download it (at a pinned commit); None for a file shipped in the
            package.
    """

    path: str
    sha256: str
    url: str | None = None

    @property
    def packaged(self) -> bool:
        """Whether the file ships inside the package."""
        return self.url is None


class DownloadError(OSError):
    """A data file could not be downloaded; nothing was kept."""


class ChecksumError(DownloadError):
    """A downloaded file's SHA-256 is not the pinned one; the download was discarded."""


def data_folder(path: str | Path | None = None) -> Path | None:
    """The user's data folder: ``path`` if given, else ``$MOA_DATA_DIR``, else None.

    Raises:
        FileNotFoundError: The folder named does not exist.
    """
    chosen = path if path is not None else os.environ.get(DATA_DIR_ENV)
    if not chosen:
        return None
    folder = Path(chosen)
    if not folder.is_dir():
        msg = f"benchmark data folder not found: {folder}"
        raise FileNotFoundError(msg)
    return folder


def locate(file: DataFile, data_dir: str | Path | None = None) -> Traversable:
    """Where to read ``file``: the user's data folder, the package, or the download cache.

    Args:
        file: The file wanted.
        data_dir: A data folder that overrides the others; None: ``$MOA_DATA_DIR`` if set.

    Raises:
        FileNotFoundError: The data folder, or the file in it, does not exist.
        DownloadError: The file had to be downloaded and could not be.
        ChecksumError: The download's checksum is not the pinned one.
        MissingExtraError: The file has to be downloaded and pooch is not installed.
    """
    folder = data_folder(data_dir)
    if folder is not None:
        path = folder / file.path
        if not path.is_file():
            msg = (
                f"data file not found: {path} (a data folder from --data-dir or "
                f"{DATA_DIR_ENV} replaces the packaged and downloaded data; unset both to "
                "use those)"
            )
            raise FileNotFoundError(msg)
        return path
    if file.packaged:
        return packaged(file.path)
    return download(file)


def packaged(path: str) -> Traversable:
    """A file shipped in the package, by its data-folder path."""
    resource = files(PACKAGED_DATA)
    for part in path.split("/"):
        resource = resource / part
    return resource


def cache_dir() -> Path:
    """Where downloaded data is kept: ``$MOA_CACHE_DIR``, else the user's cache folder.

    Raises:
        MissingExtraError: ``$MOA_CACHE_DIR`` is unset and pooch is not installed.
    """
    chosen = os.environ.get(CACHE_DIR_ENV)
    if chosen:
        return Path(chosen)
    require("pooch", purpose="finding the user's cache folder")
    import pooch  # type: ignore[import-untyped]  # noqa: PLC0415 - the eval extra

    return Path(pooch.os_cache(_CACHE_NAME))


def download(file: DataFile) -> Path:
    """``file`` from the cache, downloading it first if it is missing or not the pinned one.

    pooch streams the download to a temporary file beside the target, checks its SHA-256
    and only then moves it into place: an interrupted or corrupt download leaves nothing.

    Raises:
        ValueError: The file ships in the package and has no download source.
        DownloadError: The download failed; the message names the file and its source.
        ChecksumError: The download's checksum is not the pinned one.
        MissingExtraError: pooch is not installed.
    """
    if file.url is None:
        msg = f"{file.path} ships in the package and has no download source"
        raise ValueError(msg)
    require("pooch", purpose=f"downloading {file.path}")
    import pooch  # noqa: PLC0415 - the eval extra

    target = cache_dir() / file.path
    try:
        fetched = pooch.retrieve(
            file.url,
            known_hash=f"sha256:{file.sha256}",
            fname=target.name,
            path=target.parent,
            progressbar=False,
        )
    except ValueError as error:
        # pooch's only ValueError here: the downloaded bytes' hash is not the known one.
        msg = (
            f"{file.path}: the file downloaded from {file.url} does not have the pinned "
            f"SHA-256 {file.sha256}; it was discarded and nothing was kept in {target.parent}"
        )
        raise ChecksumError(msg) from error
    except OSError as error:  # requests' errors are OSErrors
        msg = (
            f"could not download {file.path} from {file.url} ({error}); rerun to retry, or "
            f"pass --data-dir (or set {DATA_DIR_ENV}) to a folder that holds it"
        )
        raise DownloadError(msg) from error
    return Path(fetched)


def _readable(path: Traversable) -> Traversable:
    if not path.is_file():
        msg = f"data file not found: {path}"
        raise FileNotFoundError(msg)
    return path


def read_json(path: Traversable) -> Any:
    """A JSON file's content; a missing file's error names it."""
    return json.loads(_readable(path).read_text(encoding="utf-8"))


def read_jsonl(path: Traversable) -> list[dict[str, Any]]:
    """Every row of a JSONL file; a missing file's error names it."""
    with _readable(path).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def load_json(file: DataFile, data_dir: str | Path | None = None) -> Any:
    """`read_json` of `locate`'s file."""
    return read_json(locate(file, data_dir))


def load_jsonl(file: DataFile, data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """`read_jsonl` of `locate`'s file."""
    return read_jsonl(locate(file, data_dir))


def load_text(file: DataFile, data_dir: str | Path | None = None) -> str:
    """A text file's content; a missing file's error names it."""
    return _readable(locate(file, data_dir)).read_text(encoding="utf-8")
