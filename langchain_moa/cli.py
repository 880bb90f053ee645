"""The ``moa`` command: ``moa chat "question"`` and ``moa eval ...``."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from langchain_moa.accounting import format_summary
from langchain_moa.chat_models import ChatMoA
from langchain_moa.eval import cli as eval_cli
from langchain_moa.graph import AGGREGATOR_NODE, CALL_END, CALL_ERROR, CALL_START
from langchain_moa.local import DEFAULT_LAYERS, DEFAULT_MAX_TOKENS, DEFAULT_PROPOSERS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moa", description="Mixture-of-Agents from the shell.")
    commands = parser.add_subparsers(dest="command", required=True)
    chat = commands.add_parser(
        "chat",
        help="answer a question with MoA, streaming the final answer",
        description="Answer a question with MoA. Without --model it runs offline "
        "on the embedded SmolLM2-135M-Instruct.",
    )
    chat.add_argument("question")
    chat.add_argument("--system", help="a system message to put first")
    chat.add_argument(
        "--model",
        action="append",
        metavar="PROVIDER:MODEL",
        help="a proposer (repeat for more), e.g. openai:gpt-4o-mini; "
        "without it the embedded model is used",
    )
    chat.add_argument(
        "--aggregator",
        metavar="PROVIDER:MODEL",
        help="the aggregator; the first --model by default",
    )
    chat.add_argument(
        "--layers",
        type=int,
        help=f"layers counting the aggregator's (default {DEFAULT_LAYERS} on the "
        "embedded model, 3 with --model, as the paper)",
    )
    chat.add_argument("--min-proposers", type=int, default=1)
    chat.add_argument(
        "--proposers",
        type=int,
        default=DEFAULT_PROPOSERS,
        help="embedded model only: proposers per layer",
    )
    chat.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULT_MAX_TOKENS,
        help="embedded model only: longest answer of each call",
    )
    chat.add_argument("--gguf", help="embedded model only: serve this GGUF instead of SmolLM2")
    chat.add_argument(
        "--show-layers", action="store_true", help="print each proposer's answer as it arrives"
    )
    chat.set_defaults(handler=chat_command)
    eval_cli.add_parser(commands)
    return parser


def _model(args: argparse.Namespace) -> ChatMoA:
    if args.model:
        return ChatMoA(
            proposers=args.model,
            aggregator=args.aggregator or args.model[0],
            layers=args.layers,
            min_proposers=args.min_proposers,
        )
    if args.aggregator:
        _fail("--aggregator needs --model proposers")
    return ChatMoA.local(
        layers=args.layers or DEFAULT_LAYERS,
        proposers=args.proposers,
        max_tokens=args.max_tokens,
        model_path=args.gguf,
        min_proposers=args.min_proposers,
    )


class _LayerPrinter(BaseCallbackHandler):
    """Prints each proposer's answer as soon as it arrives (a custom event)."""

    def __init__(self) -> None:
        self.answer_started = False

    def on_custom_event(self, name: str, data: Any, **_: Any) -> None:
        if name == CALL_START and data["node"] == AGGREGATOR_NODE:
            print("\n--- answer ---", flush=True)
        elif name in {CALL_END, CALL_ERROR} and data["node"] != AGGREGATOR_NODE:
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
    return 0


def _fail(message: str) -> NoReturn:
    print(f"moa: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _exit_on_sigterm(signum: int, _frame: object) -> NoReturn:
    # SystemExit runs the atexit hooks, which stop the local server.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``moa`` command."""
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return int(args.handler(args))
    except (ValueError, FileNotFoundError) as error:
        _fail(str(error))


if __name__ == "__main__":
    raise SystemExit(main())
