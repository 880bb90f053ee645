"""A client that leaves mid-answer, spoken to an ASGI app directly (no socket)."""

import asyncio
import json
from typing import Any


def post_scope(path: str, *, spec_version: str) -> dict[str, Any]:
    """The scope of a JSON POST to ``path``.

    ``spec_version`` 2.3 is uvicorn's: Starlette then watches for the client
    leaving while it streams, and cancels the stream when it does.
    """
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"moa")],
        "client": ("127.0.0.1", 1),
        "server": ("moa", 80),
    }


async def leave_when(app: Any, path: str, body: dict[str, Any], *parts: bytes) -> None:
    """POST ``body``, then leave (``http.disconnect``) once a sent chunk holds every part."""
    requests = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]
    seen = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop(0)
        await seen.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent = message.get("body", b"")
        if all(part in sent for part in parts):
            seen.set()

    await asyncio.wait_for(app(post_scope(path, spec_version="2.3"), receive, send), 10)
