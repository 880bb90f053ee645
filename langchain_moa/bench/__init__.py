"""``moa bench``: ChatMoA against its critical path, over HTTP, on a scheduled local server.

The server (``langchain_moa.bench.server``) and the measurements
(``langchain_moa.bench.measure``) need the ``bench`` extra (starlette and
uvicorn); importing this package does not.
"""

from __future__ import annotations

EXTRA_HINT = "pip install 'langchain-moa[bench]'"


class BenchExtraMissingError(ImportError):
    """starlette or uvicorn, which the benchmark's server needs, is not installed."""


__all__ = ["EXTRA_HINT", "BenchExtraMissingError"]
