"""A planted key appears in nothing a MoA run leaves behind.

A random key is put in an environment variable that a stack file names with
``api_key_env``; the stack's models talk real HTTP to a scripted
OpenAI-compatible server on 127.0.0.1 (`ScriptedOpenAI`), which checks that the
key did arrive, in the ``Authorization`` header. Models named in ``FAILING``
answer an HTTP error whose body echoes that header and the bare key, as some
servers do ("Incorrect API key provided: ..."), so that errors carry the key
back to the client.

Then the key, and each half of its random part, is searched for in: answers
(``invoke``, ``ainvoke``, ``stream``, ``astream``, ``batch``), their
``response_metadata`` and call records (``get_calls``), ``astream_events``,
every run a LangChain tracer collects (inputs, outputs, extra, serialized,
error), ``repr``/``str`` of the ``ChatMoA``, its stack and models and their
LangChain serialization, the exceptions of failing runs (a failing aggregator,
every proposer down) with their ``__cause__``/``__context__`` chains and
traces, every log record at DEBUG (every logger: ``openai``, ``httpx``,
``httpcore``, ``langchain_moa``...) and what the process writes to
stdout/stderr, ``moa chat``'s output, and the files of ``moa eval gsm8k`` runs
(a MoA stack through the eval runner, and the ``moa eval`` command on a single
model keyed by ``OPENAI_API_KEY``), its LLM cache included.

Two key shapes: ``sk-``-prefixed (OpenAI's) and bare hex (Together's and many
gateways' keys, with no prefix a pattern could spot).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from uuid import UUID

import pytest
import yaml
from langchain_core.globals import set_llm_cache
from langchain_core.load import dumpd
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run

from langchain_moa import ChatMoA
from langchain_moa.eval import cli as eval_cli
from langchain_moa.eval import registry
from langchain_moa.eval.cache import SQLiteCache
from langchain_moa.graph.nodes import AggregatorFailedError, LayerFailedError
from langchain_moa.graph.state import get_calls
from tests.integration_tests.scripted_openai import ScriptedOpenAI, _handler_for

MOA = str(Path(sys.executable).with_name("moa"))
KEY_ENV = "MOA_SECRETS_TEST_KEY"
FAILING = {"down-401": HTTPStatus.UNAUTHORIZED, "down-500": HTTPStatus.INTERNAL_SERVER_ERROR}
"""Models the server fails, with the status it answers."""
QUESTION = "Natalia sold 48 clips in April and half as many in May. How many in all?"


class EchoingServer(ScriptedOpenAI):
    """`ScriptedOpenAI` that keeps each request's ``Authorization`` header, and
    fails the models in `FAILING` with an error body echoing it."""

    def __init__(self) -> None:
        super().__init__()
        self.authorizations: list[str] = []

    def __enter__(self) -> Self:
        server = self

        class Handler(_handler_for(self)):  # type: ignore[misc]
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                authorization = self.headers.get("Authorization", "")
                server.authorizations.append(authorization)
                status = FAILING.get(json.loads(body).get("model"))
                if status is None:
                    self.rfile = io.BytesIO(body)
                    super().do_POST()
                    return
                key = authorization.removeprefix("Bearer ")
                self._error(
                    status,
                    f"Incorrect API key provided: {key}. You sent Authorization: {authorization}",
                )

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self


@pytest.fixture(scope="module")
def server() -> Iterator[EchoingServer]:
    with EchoingServer() as running:
        yield running


@pytest.fixture(params=["sk-prefixed", "bare-hex"])
def key(request, monkeypatch) -> str:
    random = secrets.token_hex(24)
    planted = f"sk-planted-{random}" if request.param == "sk-prefixed" else random
    monkeypatch.setenv(KEY_ENV, planted)
    # Nothing else may hold a key the client could send instead.
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    return planted


def needles(key: str) -> list[str]:
    """The key, and each half of its random part: a partly masked key is still a leak."""
    random = key.removeprefix("sk-planted-")
    half = len(random) // 2
    return [key, random[:half], random[half:]]


class Haystack:
    """Everything a run left behind, by where it came from."""

    def __init__(self) -> None:
        self.places: dict[str, str] = {}

    def add(self, where: str, thing: Any) -> None:
        text = thing if isinstance(thing, str) else json.dumps(thing, default=_default)
        self.places[where] = self.places.get(where, "") + "\n" + text

    def add_error(self, where: str, error: BaseException) -> None:
        """The error, its chain and its trace."""
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            self.add(f"{where}: {type(current).__name__}", f"{current!s}\n{current!r}")
            self.add(f"{where}: args", repr(current.args))
            for name in ("body", "response", "message"):
                if hasattr(current, name):
                    self.add(f"{where}: .{name}", repr(getattr(current, name)))
            current = current.__cause__ or current.__context__
        self.add(f"{where}: traceback", "".join(traceback.format_exception(error)))

    def assert_no(self, key: str) -> None:
        found = [
            f"{where} (as {needle[:8]}...)"
            for where, text in self.places.items()
            for needle in needles(key)
            if needle in text
        ]
        assert not found, f"the key leaked into: {found}"
        assert self.places


def _default(value: Any) -> Any:
    if isinstance(value, BaseMessage | Run):
        return value.model_dump()
    if isinstance(value, UUID | Path):
        return str(value)
    return repr(value)


class Collector(BaseTracer):
    """Every run LangChain traces (all of them, nested ones too)."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        pass

    def _end_trace(self, run: Run) -> None:
        super()._end_trace(run)
        self.finished.append(run)

    def add_to(self, haystack: Haystack, where: str, model_errors: Haystack) -> None:
        """Every run into ``haystack``, but failed model runs' reports into ``model_errors``.

        A failed model run's report is LangChain's: its ``error`` (the provider's
        exception and trace) and its ``outputs`` (an empty message whose
        ``response_metadata`` holds the error response's body and headers), as
        langchain_core's callback manager hands them to every handler (see
        `test_traced_model_errors_hold_no_key`).
        """
        assert self.finished, "the tracer saw no run"
        for run in self.finished:
            what = f"{where}: trace of {run.name} ({run.run_type})"
            report = {"error": run.error, "outputs": run.outputs, "events": run.events}
            failed_model = run.run_type == "llm" and run.error is not None
            if failed_model:
                model_errors.add(f"{what}: failure", report)
            haystack.add(
                what,
                {
                    "inputs": run.inputs,
                    "extra": run.extra,
                    "serialized": run.serialized,
                    "tags": run.tags,
                    **({} if failed_model else report),
                },
            )


def _entry(model: str) -> dict[str, Any]:
    return {"model": f"openai:{model}", "base_url": "URL", "api_key_env": KEY_ENV}


def stack_file(tmp_path: Path, url: str, *, layers: list[list[str]], aggregator: str) -> Path:
    """A stack file whose every model is on ``url``, keyed by `KEY_ENV`."""
    spec = {
        "proposer_layers": [[_entry(m) for m in layer] for layer in layers],
        "aggregator": _entry(aggregator),
        "max_retries": 0,
        "max_tokens": 64,
        "timeout_s": 30,
    }
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(spec).replace("URL", url), encoding="utf-8")
    assert KEY_ENV in path.read_text()
    return path


def the_model_itself(moa: ChatMoA, haystack: Haystack) -> None:
    """What a ``ChatMoA`` shows of itself: repr, str, its stack and models, serialized."""
    haystack.add("repr(ChatMoA)", repr(moa))
    haystack.add("str(ChatMoA)", str(moa))
    haystack.add("repr(stack)", repr(moa.stack))
    haystack.add("ChatMoA identifying params", moa._identifying_params)
    haystack.add("ChatMoA dumpd", dumpd(moa))
    haystack.add("ChatMoA llm string (cache key)", moa._get_llm_string())
    haystack.add("ChatMoA graph", moa.graph.get_graph().draw_mermaid())
    for model in [*(m for layer in moa.stack.layers for m in layer), moa.stack.aggregator]:
        haystack.add(f"repr({model.model_name})", repr(model))
        haystack.add(f"dumpd({model.model_name})", dumpd(model))
        haystack.add(f"model_dump({model.model_name})", model.model_dump())


def check_key_was_sent(server: EchoingServer, key: str) -> None:
    # Otherwise the test proves nothing: the key must have travelled.
    assert f"Bearer {key}" in server.authorizations
    server.authorizations.clear()


CONVERSATION = [SystemMessage("Answer briefly."), HumanMessage(QUESTION)]


@pytest.fixture
def logs(caplog, capfd) -> Callable[[], dict[str, str]]:
    """What was logged at DEBUG (every logger) and written to stdout/stderr, when called."""
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpcore", "langchain_moa", "langchain", "langgraph"):
        caplog.set_level(logging.DEBUG, logger=name)

    def collected() -> dict[str, str]:
        records = "\n".join(
            f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
        )
        # openai's client logs each request at DEBUG: the capture did reach that far.
        assert any(
            r.name.startswith("openai") and r.levelno == logging.DEBUG for r in caplog.records
        ), "no DEBUG record of openai's captured"
        out, err = capfd.readouterr()
        return {"log records at DEBUG": records, "stdout": out, "stderr": err}

    return collected


def test_answers_metadata_traces_and_logs_hold_no_key(server, key, tmp_path, logs) -> None:
    # One proposer answers 401 echoing the key: the answer is degraded, its record an error.
    path = stack_file(
        tmp_path, server.base_url, layers=[["p1", "down-401", "p2"], ["p1", "p2"]], aggregator="agg"
    )
    moa = ChatMoA.from_config(path)
    haystack, tracer = Haystack(), Collector()
    config = {"callbacks": [tracer]}

    answer = moa.invoke(CONVERSATION, config)
    assert answer.response_metadata["degraded"]
    # The echoed key was in the failed call's error, and was masked there.
    failed = [call for call in get_calls(answer) if call["model"] == "down-401"]
    assert failed
    assert all("[redacted]" in (call["error"] or "") for call in failed)
    for where, result in [
        ("invoke", answer),
        ("ainvoke", asyncio.run(moa.ainvoke(CONVERSATION, config))),
        *(("batch", r) for r in moa.batch([CONVERSATION, [HumanMessage("2+2?")]], config)),
    ]:
        haystack.add(f"{where}: answer", result.text)
        haystack.add(f"{where}: response_metadata", result.response_metadata)
        haystack.add(f"{where}: message", result.model_dump())
        haystack.add(f"{where}: get_calls", get_calls(result))
    chunks = list(moa.stream(CONVERSATION, config))
    haystack.add("stream: chunks", [chunk.model_dump() for chunk in chunks])

    async def events() -> list[Any]:
        chunks = [c async for c in moa.astream(CONVERSATION, config)]
        every = [e async for e in moa.astream_events(CONVERSATION, config, version="v2")]
        return [chunks, every]

    haystack.add("astream and astream_events", asyncio.run(events()))
    tracer.add_to(haystack, "tracer", Haystack())
    the_model_itself(moa, haystack)
    check_key_was_sent(server, key)
    for where, text in logs().items():
        haystack.add(where, text)
    haystack.assert_no(key)


@pytest.mark.parametrize(
    "case",
    [
        ([["p1", "p2"]], "down-401", AggregatorFailedError),
        ([["p1", "p2"]], "down-500", AggregatorFailedError),
        ([["down-401", "down-500"]], "agg", LayerFailedError),
        ([["p1"], ["down-500", "down-401"]], "agg", LayerFailedError),
    ],
    ids=["aggregator-401", "aggregator-500", "every-proposer-down", "second-layer-down"],
)
def test_failing_runs_raise_errors_that_hold_no_key(server, key, tmp_path, logs, case) -> None:
    layers, aggregator, error = case
    moa = ChatMoA.from_config(
        stack_file(tmp_path, server.base_url, layers=layers, aggregator=aggregator)
    )
    haystack, tracer = Haystack(), Collector()
    config = {"callbacks": [tracer]}
    events: list[Any] = []

    async def drain(stream: AsyncIterator[Any], into: list[Any]) -> None:
        async for item in stream:
            into.append(item)  # noqa: PERF401 - kept up to the failure

    async def failing_async_runs() -> list[BaseException]:
        with pytest.raises(error) as ainvoked:
            await moa.ainvoke(CONVERSATION, config)
        with pytest.raises(error) as astreamed:
            await drain(moa.astream(CONVERSATION, config), [])
        with pytest.raises(error) as evented:
            await drain(moa.astream_events(CONVERSATION, config, version="v2"), events)
        return [ainvoked.value, astreamed.value, evented.value]

    with pytest.raises(error) as invoked:
        moa.invoke(CONVERSATION, config)
    with pytest.raises(error) as streamed:
        list(moa.stream(CONVERSATION, config))
    caught = [invoked.value, streamed.value, *asyncio.run(failing_async_runs())]
    # Each message names the failures, the echoed key masked.
    assert all("[redacted]" in str(failure) for failure in caught)
    for where, failure in zip(
        ["invoke", "stream", "ainvoke", "astream", "astream_events"], caught, strict=True
    ):
        haystack.add_error(where, failure)
    haystack.add("astream_events up to the failure", events)
    tracer.add_to(haystack, "tracer", Haystack())
    assert any(run.error for run in tracer.finished if run.run_type == "chain")
    the_model_itself(moa, haystack)
    check_key_was_sent(server, key)
    for where, text in logs().items():
        haystack.add(where, text)
    haystack.assert_no(key)


def _run(command: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, env=env
    )


def test_moa_chat_output_holds_no_key(server, key, tmp_path) -> None:
    path = stack_file(tmp_path, server.base_url, layers=[["p1", "down-401"]], aggregator="agg")
    done = _run([MOA, "chat", "--config", str(path), "--show-layers", QUESTION], os.environ)
    assert done.returncode == 0, done.stderr[-2000:]
    failed = stack_file(tmp_path, server.base_url, layers=[["p1"]], aggregator="down-401")
    refused = _run([MOA, "chat", "--config", str(failed), QUESTION], os.environ)
    assert refused.returncode != 0
    haystack = Haystack()
    for where, run in (("moa chat", done), ("moa chat, aggregator down", refused)):
        haystack.add(f"{where}: stdout", run.stdout)
        haystack.add(f"{where}: stderr", run.stderr)
    check_key_was_sent(server, key)
    haystack.assert_no(key)


def _files(folder: Path, haystack: Haystack, where: str) -> None:
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert files, f"{where}: no files in {folder}"
    for path in files:
        # Bytes as text: a SQLite cache or a chart is searched too.
        haystack.add(f"{where}: {path.relative_to(folder)}", path.read_bytes().decode("latin-1"))


def test_evaluation_files_hold_no_key(server, key, tmp_path, logs) -> None:
    haystack = Haystack()
    # A MoA stack, one proposer failing with the key in its error, through moa eval's runner.
    path = stack_file(tmp_path, server.base_url, layers=[["p1", "down-401"]], aggregator="agg")
    bench = registry.benchmark("gsm8k")
    out = tmp_path / "moa-eval"
    args = argparse.Namespace(
        data_dir=None, subset=None, limit=2, concurrency=1, judge=None, judge_max_tokens=None
    )
    set_llm_cache(SQLiteCache(out / "cache.sqlite"))
    try:
        metrics = asyncio.run(eval_cli._runner(bench, args)(ChatMoA.from_config(path), out / "moa"))
    finally:
        set_llm_cache(None)
    assert metrics["n_total"] == 2
    _files(out, haystack, "moa eval runner, MoA stack")
    # The command itself, on one model keyed the usual way (OPENAI_API_KEY).
    env = {**os.environ, "OPENAI_API_KEY": key, "OPENAI_BASE_URL": server.base_url}
    cli_out = tmp_path / "moa-eval-cli"
    done = _run(
        [MOA, "eval", "gsm8k", "--model", "openai:scripted", "--limit", "2", "--out", str(cli_out)],
        env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    haystack.add("moa eval: stdout", done.stdout)
    haystack.add("moa eval: stderr", done.stderr)
    _files(cli_out, haystack, "moa eval command")
    check_key_was_sent(server, key)
    for where, text in logs().items():
        haystack.add(where, text)
    haystack.assert_no(key)


def test_traced_model_errors_hold_no_key(server, key, tmp_path) -> None:
    # langchain-core reports a failed call's exception to tracers before our nodes see
    # it: the key must be masked in the error body itself (RedactingTransport).
    path = stack_file(tmp_path, server.base_url, layers=[["p1", "down-401"]], aggregator="agg")
    tracer, model_errors = Collector(), Haystack()
    ChatMoA.from_config(path).invoke(CONVERSATION, {"callbacks": [tracer]})
    tracer.add_to(Haystack(), "tracer", model_errors)
    check_key_was_sent(server, key)
    model_errors.assert_no(key)
