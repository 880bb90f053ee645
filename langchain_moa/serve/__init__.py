"""``moa serve``: MoA stacks behind OpenAI-compatible chat completions and Responses APIs.

The modules, in the order a request meets them: ``app`` (the Starlette app,
its limits and the uvicorn runner), ``openai_format`` and ``responses_format``
(each API's request, checked), ``to_langchain`` (requests as LangChain
messages), ``asking`` (one request as the stack is asked it, for either API),
``structured`` (JSON answers, asked for and checked), ``turns`` (a tool loop's
references for ``per_turn`` stacks), ``chat`` and ``responses`` (the two
endpoints), ``from_langchain`` (answers and stream events as OpenAI's),
``http`` (errors and event streams) and ``live`` (the live page's events).
They need the ``serve`` extra (starlette, uvicorn, jsonschema, cachetools);
importing this package does not.
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
