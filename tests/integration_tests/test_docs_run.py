"""Every Python block of the README and ``docs/`` runs as it is written.

``tests/unit_tests/test_docs.py`` checks every block (it compiles, its imports
exist, ...); here each is run, in this process, with nothing in it changed but
a connection string, and these around it:

- The hosts it names are served on 127.0.0.1. OpenAI's and Together's APIs are
  the scripted OpenAI-compatible server (``scripted_openai.py``: real HTTP,
  predictable replies). ``127.0.0.1:8000`` is ``moa serve``'s app, over stacks
  of that server's models, for ``docs/serve.md``'s blocks (which talk to
  ``moa serve``), and the scripted server itself elsewhere (where it stands for
  a vLLM or llama.cpp server). The host is swapped in httpx's transports: every
  client these blocks make (openai's, langchain-openai's, langchain-together's,
  ours) sends through them.
- Keys are placeholders; the durable example's ``DB_URI`` is this session's
  PostgreSQL.

So these runs say that the code as documented works against the APIs it names,
not what a model answers: the scripted server is plumbing. The README's two
blocks that need no provider run on the embedded model (``test_readme.py``).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest

from tests.docs_pages import README_ON_THE_EMBEDDED_MODEL, blocks
from tests.integration_tests.embedded import scripted_stack, serving
from tests.integration_tests.postgres import Postgres
from tests.integration_tests.scripted_openai import ScriptedOpenAI

DOCS_DB_URI = "postgresql://postgres:secret@localhost:5432/postgres"
PROVIDERS = [("api.openai.com", 443), ("api.together.xyz", 443), ("api.together.ai", 443)]
LOCAL_SERVER = ("127.0.0.1", 8000)
CALLS = (".invoke(", ".stream(", ".create(", ".parse(", "Runner.run(")
"""What in a block calls a model: then the servers must have been asked."""

pytestmark = pytest.mark.timeout(120)


def _elsewhere(where: str, body: str) -> bool:
    return where.startswith("README.md:") and any(n in body for n in README_ON_THE_EMBEDDED_MODEL)


PYTHON = blocks("python")
BLOCKS = [(where, body) for where, _, body in PYTHON if not _elsewhere(where, body)]


def test_only_the_readmes_two_blocks_run_elsewhere() -> None:
    assert len(PYTHON) - len(BLOCKS) == len(README_ON_THE_EMBEDDED_MODEL)


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def served(scripted: ScriptedOpenAI) -> Iterator[Any]:
    """``moa serve``'s app over the stacks the serve page names, of scripted models."""
    stack = scripted_stack(scripted.base_url)
    with serving({"local": stack, "team": stack}) as server:
        yield server


def _address(url: str) -> tuple[str, int]:
    parsed = httpx.URL(url)
    return parsed.host, parsed.port or 80


def _moved(monkeypatch: pytest.MonkeyPatch, to: dict[tuple[str, int], tuple[str, int]]) -> None:
    """Send requests for the hosts in ``to`` to 127.0.0.1 instead, over plain HTTP.

    Through httpx and httpx2 both: openai 3.x sends through httpx2 (pydantic's
    successor of httpx), langchain-openai's own clients and ours through httpx.
    """

    def move(request: Any) -> Any:
        url = request.url
        where = (url.host, url.port or (443 if url.scheme == "https" else 80))
        if where in to:
            host, port = to[where]
            request.url = url.copy_with(scheme="http", host=host, port=port)
        return request

    for library in (httpx, httpx2):
        sync = library.HTTPTransport.handle_request
        asynchronous = library.AsyncHTTPTransport.handle_async_request
        monkeypatch.setattr(
            library.HTTPTransport, "handle_request", lambda s, r, f=sync: f(s, move(r))
        )
        monkeypatch.setattr(
            library.AsyncHTTPTransport,
            "handle_async_request",
            lambda s, r, f=asynchronous: f(s, move(r)),
        )


@dataclass(frozen=True)
class Servers:
    scripted: ScriptedOpenAI
    served: Any
    postgres: Postgres


@pytest.fixture(scope="module")
def servers(scripted: ScriptedOpenAI, served: Any, postgres: Postgres) -> Servers:
    return Servers(scripted, served, postgres)


@pytest.mark.parametrize(("where", "body"), BLOCKS, ids=[w for w, _ in BLOCKS])
def test_the_block_runs(
    where: str,
    body: str,
    servers: Servers,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scripted, served, postgres = servers.scripted, servers.served, servers.postgres
    scripted_at = _address(scripted.base_url)
    local = _address(served.base_url) if where.startswith("docs/serve.md") else scripted_at
    _moved(monkeypatch, {**dict.fromkeys(PROVIDERS, scripted_at), LOCAL_SERVER: local})
    for key in ("OPENAI_API_KEY", "TOGETHER_API_KEY"):
        monkeypatch.setenv(key, "placeholder-key")
    # The Agents SDK would send its traces to OpenAI: nothing of a test leaves it.
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    if "DB_URI" in body:
        assert DOCS_DB_URI in body
        body = body.replace(DOCS_DB_URI, postgres.url)
    asked = len(scripted.requests)

    code = compile(body, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    ran = eval(code, {"__name__": "__docs__"})  # noqa: S307 - the docs' own code
    if inspect.iscoroutine(ran):
        asyncio.run(ran)

    printed = capsys.readouterr().out
    if "print(" in body:
        assert printed.strip(), f"{where}: printed nothing"
    if any(call in body for call in CALLS):
        assert len(scripted.requests) > asked, f"{where}: no model was asked"
