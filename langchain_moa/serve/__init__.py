"""``moa serve``: MoA stacks behind an OpenAI-compatible chat completions API.

``langchain_moa.serve.app`` (the Starlette app and the uvicorn runner) needs
the ``serve`` extra (starlette and uvicorn); importing this package, or
``langchain_moa.serve.openai_format``, does not.
"""

from __future__ import annotations

EXTRA_HINT = "pip install 'langchain-moa[serve]'"

DEFAULT_MAX_CONCURRENCY = 64
"""Requests one instance runs at once; more are refused with 429."""
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
"""The largest request body: room for a long conversation, not for abuse."""
DEFAULT_MAX_MESSAGES = 512
"""The most messages one request may hold."""


class ServeExtraMissingError(ImportError):
    """starlette or uvicorn, which ``moa serve`` needs, is not installed."""


__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_MESSAGES",
    "EXTRA_HINT",
    "ServeExtraMissingError",
]
