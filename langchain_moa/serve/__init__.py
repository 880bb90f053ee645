"""``moa serve``: MoA stacks behind an OpenAI-compatible chat completions API.

``langchain_moa.serve.app`` (the Starlette app and the uvicorn runner) needs
the ``serve`` extra (starlette, uvicorn, sse-starlette); importing this
package, or ``langchain_moa.serve.openai_format``, does not.
"""

from __future__ import annotations

EXTRA_HINT = "pip install 'langchain-moa[serve]'"


class ServeExtraMissingError(ImportError):
    """starlette or uvicorn, which ``moa serve`` needs, is not installed."""


__all__ = ["EXTRA_HINT", "ServeExtraMissingError"]
