"""A persistent LangChain LLM cache, so reruns and ablations reuse generations.

Keys are LangChain's own: the serialized prompt and the model's configuration
(``llm_string``), so two runs that share a proposer with the same settings pay
for its answers once, as the paper reused proposer outputs across ablations.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import Serializable, dumps, loads
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation

# Only what chat models return is read back: the file is data, not code.
_CACHED_TYPES: list[type[Serializable]] = [
    Generation,
    ChatGeneration,
    ChatGenerationChunk,
    AIMessage,
    AIMessageChunk,
]


class SQLiteCache(BaseCache):
    """LLM generations in one SQLite file; safe across threads."""

    def __init__(self, path: str | Path) -> None:
        """Open or create the cache file."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS generations "
                "(prompt TEXT, llm TEXT, value TEXT, PRIMARY KEY (prompt, llm))"
            )

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The cached generations, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM generations WHERE prompt = ? AND llm = ?",
                (prompt, llm_string),
            ).fetchone()
        if row is None:
            return None
        generations: Sequence[Generation] = loads(row[0], allowed_objects=_CACHED_TYPES)
        return list(generations)

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store generations."""
        value = dumps(list(return_val))
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO generations VALUES (?, ?, ?)",
                (prompt, llm_string, value),
            )

    def clear(self, **kwargs: Any) -> None:  # noqa: ARG002 - BaseCache's signature
        """Drop every entry."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM generations")

    def __len__(self) -> int:
        """Number of cached prompts."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0])
