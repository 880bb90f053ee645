"""Stacks for the tests that serve them (``moa serve``, the page): the embedded model's
shape, or two proposers and an aggregator on a scripted OpenAI-compatible server."""

import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
from langchain_openai import ChatOpenAI

from langchain_moa import ChatMoA
from langchain_moa.bench.serving import BackgroundServer
from langchain_moa.local.server import LlamaServer, _LlamaServerChatModel
from langchain_moa.openai_compatible import NO_KEY, openai_compatible_model


def scripted_stack(base_url: str, fanout: str = "every_call") -> ChatMoA:
    """Proposers ``proposer-a`` and ``proposer-b`` and an ``aggregator``, served at ``base_url``."""

    def model(name: str) -> ChatOpenAI:
        return openai_compatible_model(name, base_url=base_url, api_key=NO_KEY, max_retries=0)

    return ChatMoA(
        proposers=[model("proposer-a"), model("proposer-b")],
        aggregator=model("aggregator"),
        layers=2,
        fanout=fanout,
    )


def embedded_stack(
    server: LlamaServer, *, proposers: int, max_tokens: int, layers: int = 2
) -> ChatMoA:
    """The embedded stack's shape on ``server``, each model with HTTP clients of its own.

    A served app runs in uvicorn's thread, on its own event loop; the server's
    shared clients may hold connections of the tests' loop. The models are of
    the embedded model's own class (its token counts, and llama.cpp's form of
    a JSON schema), as ``LlamaServer.chat_model`` makes them.
    """
    server.start()

    def model(seed: int) -> ChatOpenAI:
        built = openai_compatible_model(
            server.model_alias,
            base_url=server.base_url,
            api_key=NO_KEY,
            model_class=_LlamaServerChatModel,
            max_tokens=max_tokens,
            temperature=0.7,
            seed=seed,
        )
        built._server = server
        return built

    return ChatMoA(
        proposers=[model(seed) for seed in range(1, proposers + 1)],
        aggregator=model(0),
        layers=layers,
    )


def free_port() -> int:
    """A port free on 127.0.0.1 now (a child process binds it next)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(process: subprocess.Popen[str], port: int, timeout_s: float = 60) -> None:
    """Return once ``moa serve`` (``process``) answers ``GET /health`` on ``port``.

    Fails with its stderr if it exits first, or when ``timeout_s`` passes.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "moa serve did not start"
        time.sleep(0.2)


@contextmanager
def serving(stacks: Mapping[str, Any], **settings: Any) -> Iterator[BackgroundServer]:
    """``moa serve``'s app over ``stacks`` in uvicorn on 127.0.0.1, in a thread, while open."""
    from langchain_moa.serve.app import create_app  # noqa: PLC0415 - the serve extra

    background = BackgroundServer(create_app(stacks, **settings), name="moa-serve")
    background.start()
    try:
        yield background
    finally:
        background.stop()
