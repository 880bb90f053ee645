"""The ``moa`` command: ``moa chat "question"``, ``moa eval``, ``moa bench``, ``moa serve``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import webbrowser
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, get_args

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from langchain_moa.accounting import format_summary, known_secret
from langchain_moa.chat_models import ChatMoA
from langchain_moa.cli_fields import add_field_flag
from langchain_moa.eval import cli as eval_cli
from langchain_moa.graph import (
    CALL_END,
    CALL_ERROR,
    CALL_START,
    AggregatorFailedError,
    LayerFailedError,
    is_answer_node,
)
from langchain_moa.local import LocalExtraMissingError, stop_all
from langchain_moa.serve import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_MESSAGES,
    ServeExtraMissingError,
)
from langchain_moa.stacks import (
    PRESETS,
    StackSpec,
    load_stack,
)
from langchain_moa.stacks.presets import (
    LOCAL_LAYERS,
    LOCAL_MAX_TOKENS,
    LOCAL_PROPOSERS,
    PAPER_MAX_TOKENS,
)
from langchain_moa.stacks.spec import AgreementMethod


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moa", description="Mixture-of-Agents from the shell.")
    commands = parser.add_subparsers(dest="command", required=True)
    chat = commands.add_parser(
        "chat",
        help="answer a question with MoA, streaming the final answer",
        description="Answer a question with MoA. Without --model, --config or --preset it "
        "runs offline on the embedded SmolLM2-135M-Instruct.",
    )
    chat.add_argument("question")
    chat.add_argument("--system", help="a system message to put first")
    stack = chat.add_mutually_exclusive_group()
    stack.add_argument(
        "--model",
        action="append",
        metavar="PROVIDER:MODEL",
        help="a proposer (repeat for more), e.g. openai:gpt-4o-mini; "
        "without --model, --config or --preset the embedded model is used",
    )
    stack.add_argument(
        "--config", metavar="FILE", help="a stack described in a .yaml, .yml or .toml file"
    )
    stack.add_argument(
        "--preset",
        choices=PRESETS,
        help="one of the paper's stacks (on Together's API, with TOGETHER_API_KEY; "
        "moa-gpt4o also needs OPENAI_API_KEY) or the embedded one",
    )
    chat.add_argument(
        "--aggregator",
        metavar="PROVIDER:MODEL",
        help="the aggregator; the first --model by default",
    )
    chat.add_argument(
        "--layers",
        type=int,
        help=f"layers counting the aggregator's (default {LOCAL_LAYERS} on the "
        "embedded model, 3 with --model, as the paper)",
    )
    chat.add_argument(
        "--min-proposers", type=int, help="proposers of each layer that must succeed (default 1)"
    )
    chat.add_argument(
        "--proposers",
        type=int,
        help=f"embedded model only: proposers per layer (default {LOCAL_PROPOSERS})",
    )
    chat.add_argument(
        "--max-tokens",
        type=int,
        help="longest answer of each call (default: the provider's with --model, "
        f"{LOCAL_MAX_TOKENS} embedded, {PAPER_MAX_TOKENS} with --preset)",
    )
    chat.add_argument("--gguf", help="embedded model only: serve this GGUF instead of SmolLM2")
    policies = chat.add_argument_group("time and failure policies (over a --config file's own)")
    strategies = chat.add_argument_group("strategy (over a --config file's own)")
    # One flag per stack field, made of the field itself (its type, choices and docstring).
    for name in POLICY_FLAGS:
        group = strategies if name in STRATEGY_FIELDS else policies
        add_field_flag(group, name)
    strategies.add_argument(
        "--early-stop",
        choices=get_args(AgreementMethod),
        help="end the proposer layers once a layer's answers agree: equal final answers, "
        "or embeddings alike (the agreement extra)",
    )
    strategies.add_argument(
        "--early-stop-threshold",
        type=float,
        help="with --early-stop embedding: the least cosine similarity (default 0.9)",
    )
    chat.add_argument(
        "--show-layers", action="store_true", help="print each proposer's answer as it arrives"
    )
    chat.set_defaults(handler=chat_command)
    eval_cli.add_parser(commands)
    _add_bench_parser(commands)
    _add_serve_parser(commands)
    _add_studio_parser(commands)
    return parser


def _measurements(text: str) -> list[int]:
    try:
        chosen = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        chosen = []
    if not chosen or any(number not in range(1, 7) for number in chosen):
        msg = f"expected measurement numbers 1-6 separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return chosen


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        msg = f"expected a whole number of at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def _add_bench_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="benchmark ChatMoA against its critical path on a local scheduled server",
        description="Run the paper's stack (2 layers of 6 proposers and an aggregator) "
        "against a local OpenAI-compatible server whose every reply follows a schedule, "
        "and print measurement, value, target and whether it holds (the bench extra).",
    )
    bench.add_argument("--out", metavar="PATH", help="also write the results as JSON")
    bench.add_argument("--quick", action="store_true", help="a short run, few queries each")
    bench.add_argument(
        "--only", type=_measurements, metavar="N[,N...]", help="run only these measurements (1-6)"
    )
    bench.add_argument(
        "--queries", type=_positive, help="concurrent queries of measurement 5 (default 200)"
    )
    bench.add_argument(
        "--limit",
        type=_positive,
        help="the provider's concurrency limit in measurement 5 (default 16)",
    )
    bench.add_argument(
        "--in-thread",
        action="store_true",
        help="serve in a thread of this process, not a child process (it then competes "
        "with the clients for the GIL)",
    )
    bench.set_defaults(handler=bench_command)


def bench_command(args: argparse.Namespace) -> int:
    """Run ``moa bench``: 0 if every target held, 1 if not."""
    from langchain_moa.bench import BenchExtraMissingError  # noqa: PLC0415 - cheap

    try:
        # Lazily: starlette and uvicorn are the bench extra's.
        from langchain_moa.bench.measure import MEASUREMENTS, main  # noqa: PLC0415
    except BenchExtraMissingError as error:
        _fail(str(error))
    return main(
        out=args.out,
        quick=args.quick,
        only=args.only or MEASUREMENTS,
        queries=args.queries,
        limit=args.limit,
        in_thread=args.in_thread,
    )


SERVE_API_KEY_ENV = "MOA_SERVE_API_KEY"
"""Where ``moa serve`` reads its bearer token, unless ``--api-key-env`` names another variable."""


def _add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve MoA stacks as an OpenAI-compatible API (/v1/chat/completions) and the "
        "live page (/)",
        description="Serve MoA stacks as OpenAI's chat completions API, each under a model "
        "id: the embedded stack as 'local', the paper's presets (with their keys) under "
        "their names, and every --stack file under its model_name or file name (the serve "
        "extra). The live page at / shows each layer's answers as they finish.",
    )
    _add_server_arguments(serve)
    serve.set_defaults(handler=serve_command)
    ui = commands.add_parser(
        "ui",
        help="moa serve, then open its live page in the browser",
        description="Run moa serve and open its live page (/) in the default browser "
        "($BROWSER if set): ask a question, watch each layer's answers fill in and the "
        "final answer stream.",
    )
    _add_server_arguments(ui)
    ui.add_argument(
        "--no-browser", action="store_true", help="serve the page without opening a browser"
    )
    ui.set_defaults(handler=ui_command)


def _add_server_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    serve.add_argument(
        "--stack",
        action="append",
        default=[],
        metavar="FILE",
        help="a stack file (.yaml, .yml, .toml) to serve too (repeat for more)",
    )
    serve.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="the environment variable holding the bearer token clients must send "
        f"(default {SERVE_API_KEY_ENV}; without it set, no token is asked for)",
    )
    serve.add_argument(
        "--max-concurrency",
        type=_positive,
        default=DEFAULT_MAX_CONCURRENCY,
        help=f"requests run at once; past it, 429 at once (default {DEFAULT_MAX_CONCURRENCY})",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=_positive,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"the largest request body; past it, 413 (default {DEFAULT_MAX_BODY_BYTES})",
    )
    serve.add_argument(
        "--max-messages",
        type=_positive,
        default=DEFAULT_MAX_MESSAGES,
        help=f"the most messages of one request; past it, 400 (default {DEFAULT_MAX_MESSAGES})",
    )


def _add_studio_parser(commands: Any) -> None:
    studio = commands.add_parser(
        "studio",
        help="serve a stack's MoA graph to LangGraph Studio (langgraph dev)",
        description="Run langgraph dev, LangGraph's in-memory development server, on the "
        "MoA graph of a stack file, a preset or (with neither) the embedded stack, as the "
        "assistant 'moa' (the studio extra). Threads keep every step's checkpoint in "
        ".langgraph_api/ under the working folder.",
    )
    stack = studio.add_mutually_exclusive_group()
    stack.add_argument(
        "--stack", metavar="FILE", help="a stack file (.yaml, .yml, .toml), as moa serve takes"
    )
    stack.add_argument("--preset", choices=PRESETS, help="a preset instead of a file")
    studio.add_argument(
        "--review",
        action="store_true",
        help="stop every run before the aggregator, so its references can be edited in the "
        "thread's state (Studio can also stop there run by run)",
    )
    studio.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    studio.add_argument("--port", type=int, default=2024, help="port to listen on (2024)")
    studio.add_argument(
        "--no-browser", action="store_true", help="do not open Studio in the browser"
    )
    studio.set_defaults(handler=studio_command)


def studio_command(args: argparse.Namespace) -> int:
    """Build the stack's graph here (a bad file stops at once), then become ``langgraph dev``."""
    try:
        from langchain_moa import studio  # noqa: PLC0415 - the studio extra's
    except ModuleNotFoundError as error:
        _fail(f"moa studio needs the studio extra (langchain-moa[studio]): {error}")
    environ = {
        **os.environ,
        studio.STACK_ENV: str(Path(args.stack).resolve()) if args.stack else "",
        studio.PRESET_ENV: args.preset or "",
        studio.REVIEW_ENV: "1" if args.review else "0",
    }
    # The dev server builds the same graph from the same variables: built here first,
    # a wrong file or a missing key is told before anything starts.
    studio.build_studio_graph(environ)
    command = studio.dev_command(
        host=args.host, port=args.port, browser=not args.no_browser, environ=environ
    )
    print(f"moa studio: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    os.execve(command[0], command, environ)  # noqa: S606 - langgraph's own CLI, our arguments


def _served_files(paths: Sequence[str]) -> dict[str, Callable[[], ChatMoA]]:
    """Each stack file under its ``model_name`` or its file name, checked now, built later."""
    stacks: dict[str, Callable[[], ChatMoA]] = {}
    for path in paths:
        spec = load_stack(path)  # a bad file stops the server before it listens
        name = spec.model_name or Path(path).stem
        if name in stacks:
            _fail(f"--stack {path}: another stack is served as {name!r} already")

        def build(path: str = path) -> ChatMoA:
            return ChatMoA.from_config(path)

        stacks[name] = build
    return stacks


def serve_command(args: argparse.Namespace) -> int:
    """Run ``moa serve`` until SIGINT or SIGTERM."""
    return _serve(args)


def ui_command(args: argparse.Namespace) -> int:
    """Run ``moa serve`` and open its live page, until SIGINT or SIGTERM."""
    return _serve(args, open_page=not args.no_browser)


def _open_page(url: str) -> None:
    print(f"moa ui: opening {url}", file=sys.stderr, flush=True)
    if not webbrowser.open(url):
        print(f"moa ui: no browser found: open {url} yourself", file=sys.stderr, flush=True)


def _on_listening(token: str, *, open_page: bool) -> Callable[[str], None]:
    """What to do once the socket listens: say where (the port bound, if 0 was asked)."""

    def listening(page: str) -> None:
        print(
            f"moa serve: {page}v1 and the live page at {page}, {token}",
            file=sys.stderr,
            flush=True,
        )
        if open_page:
            # Not in this thread: webbrowser waits for a console browser (w3m,
            # lynx) or a $BROWSER command to exit, and the server, which this
            # thread runs next, must answer it first.
            threading.Thread(target=_open_page, args=(page,), daemon=True).start()

    return listening


def _serve(args: argparse.Namespace, *, open_page: bool = False) -> int:
    try:
        # Lazily: starlette and uvicorn are the serve extra's.
        from langchain_moa.serve.app import (  # noqa: PLC0415
            LOOPBACK_HOSTS,
            create_app,
            default_stacks,
            run,
        )
    except ServeExtraMissingError as error:
        _fail(str(error))
    variable = args.api_key_env or SERVE_API_KEY_ENV
    api_key = os.environ.get(variable) or None
    if api_key is not None:
        # Whatever the variable is called, anything that echoes the token gets it masked.
        known_secret(api_key)
    if args.api_key_env and api_key is None:
        _fail(f"--api-key-env {variable}: the variable is not set")
    loopback = args.host in LOOPBACK_HOSTS
    app = create_app(
        {**default_stacks(), **_served_files(args.stack)},
        api_key=api_key,
        max_concurrency=args.max_concurrency,
        max_body_bytes=args.max_body_bytes,
        max_messages=args.max_messages,
        # On this machine only: no other site's name may stand for it (DNS rebinding).
        hosts=LOOPBACK_HOSTS if loopback else None,
    )
    if api_key is None and not loopback:
        print(
            f"moa serve: warning: listening on {args.host} with no token: anyone who can "
            f"reach it can spend the stacks' keys (set {SERVE_API_KEY_ENV})",
            file=sys.stderr,
        )
    token = f"bearer token from {variable}" if api_key else "no token asked for"
    try:
        run(
            app,
            host=args.host,
            port=args.port,
            listening=_on_listening(token, open_page=open_page),
        )
    finally:
        stop_all()
    return 0


def _given(value: Any, default: Any) -> Any:
    # "or" would turn a given 0 into the default instead of an error.
    return default if value is None else value


def _set(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The flags among ``names`` that were given, as stack fields."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _refuse(option: str, flags: dict[str, Any], hint: str = "") -> None:
    """Exit naming the first of ``flags`` given: it does not apply with ``option``."""
    for flag, value in flags.items():
        if value is not None:
            _fail(f"{flag} does not apply with {option}{hint}")


POLICY_FLAGS = (
    "timeout_s",
    "deadline_s",
    "deadline_after",
    "fallbacks",
    "best_proposer_fallback",
    "max_input_tokens",
    "reference_format",
    "reference_filter",
    "strategy",
    "reference_order",
)
"""The policy and strategy flags' stack fields: they apply to every kind of stack."""

STRATEGY_FIELDS = frozenset({"strategy", "reference_order"})
"""Of those, the ones ``--help`` shows under the strategy."""


def _policies(args: argparse.Namespace) -> dict[str, Any]:
    """The policy and strategy flags that were given, as stack fields."""
    given = _set(args, *POLICY_FLAGS)
    if args.early_stop_threshold is not None and args.early_stop is None:
        _fail("--early-stop-threshold needs --early-stop embedding")
    if args.early_stop is not None:
        given["early_stop"] = {"method": args.early_stop}
        if args.early_stop_threshold is not None:
            given["early_stop"]["threshold"] = args.early_stop_threshold
    return given


def _model(args: argparse.Namespace) -> ChatMoA:
    """The stack the flags describe, as a ``StackSpec`` and then a ``ChatMoA``."""
    policies = _policies(args)
    if args.config and policies:
        # The file's spec under the flags, checked again as one spec.
        spec = load_stack(args.config)
        return ChatMoA.from_spec(StackSpec(**{**spec.fields(), **policies}))
    if args.config or args.preset:
        option = "--config" if args.config else "--preset"
        _refuse(
            option,
            {
                "--min-proposers": args.min_proposers if args.config else None,
                "--aggregator": args.aggregator,
                "--layers": args.layers,
                "--proposers": args.proposers,
                "--gguf": args.gguf,
            },
        )
        if args.config:
            _refuse(
                "--config",
                {"--max-tokens": args.max_tokens},
                ": set it in the file",
            )
            return ChatMoA.from_config(args.config)
        # Unset flags stay unset: the preset's own settings are its defaults.
        spec = StackSpec(
            preset=args.preset, **_set(args, "max_tokens", "min_proposers"), **policies
        )
        return ChatMoA.from_spec(spec)
    if args.model:
        _refuse(
            "--model",
            {"--proposers": args.proposers, "--gguf": args.gguf},
            " (embedded model only)",
        )
        spec = StackSpec(
            proposers=args.model,
            aggregator=args.aggregator or args.model[0],
            **_set(args, "layers", "max_tokens", "min_proposers"),
            **policies,
        )
        return ChatMoA.from_spec(spec)
    if args.aggregator:
        _fail("--aggregator needs --model proposers")
    return ChatMoA.local(
        layers=_given(args.layers, LOCAL_LAYERS),
        proposers=_given(args.proposers, LOCAL_PROPOSERS),
        max_tokens=_given(args.max_tokens, LOCAL_MAX_TOKENS),
        model_path=args.gguf,
        **_set(args, "min_proposers"),
        **policies,
    )


class _LayerPrinter(BaseCallbackHandler):
    """Prints each proposer's answer as soon as it arrives (a custom event)."""

    def __init__(self) -> None:
        self.answer_started = False

    def on_custom_event(self, name: str, data: Any, **_: Any) -> None:
        # The answer's nodes include a fallback's and each step's (aggregator/...): they
        # are the answer, printed by the stream, with one heading before the first.
        if is_answer_node(data["node"]):
            if name == CALL_START and not self.answer_started:
                self.answer_started = True
                print("\n--- answer ---", flush=True)
        elif name in {CALL_END, CALL_ERROR}:
            outcome = f"FAILED: {data['error']}" if data["error"] else f"{data['latency_s']:.1f}s"
            print(f"\n--- {data['node']} ({data['model']}, {outcome}) ---", flush=True)
            if data["text"] is not None:
                print(data["text"].strip(), flush=True)


def chat_command(args: argparse.Namespace) -> int:
    """Stream the answer; with ``--show-layers`` each proposer's answer first."""
    moa = _model(args)
    messages: list[BaseMessage] = [HumanMessage(args.question)]
    if args.system:
        messages.insert(0, SystemMessage(args.system))
    callbacks: list[BaseCallbackHandler] = [_LayerPrinter()] if args.show_layers else []
    answer = None
    for chunk in moa.stream(messages, config=RunnableConfig(callbacks=callbacks)):
        print(chunk.text, end="", flush=True)
        answer = chunk if answer is None else answer + chunk
    print(flush=True)
    if answer is not None:
        metadata = answer.response_metadata
        calls = [call for layer in metadata["layers"] for call in layer]
        print(format_summary(calls, metadata["latency_s"]), file=sys.stderr)
        for reason in metadata["degradations"]:
            print(f"degraded: {reason}", file=sys.stderr)
    return 0


def _fail(message: str) -> NoReturn:
    print(f"moa: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _exit_on_sigterm(signum: int, _frame: object) -> NoReturn:
    # Servers first: calls in flight then fail at once instead of finishing.
    stop_all()
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``moa`` command."""
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return int(args.handler(args))
    except (
        ValueError,
        FileNotFoundError,
        LocalExtraMissingError,
        LayerFailedError,
        AggregatorFailedError,
    ) as error:
        _fail(str(error))


if __name__ == "__main__":
    raise SystemExit(main())
