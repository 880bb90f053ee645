"""``moa chat``: a question answered by MoA, the answer streamed; its flags and stack."""

from __future__ import annotations

import argparse
import sys
from typing import Any, get_args

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from langchain_moa.accounting import format_summary
from langchain_moa.chat_models import ChatMoA
from langchain_moa.cli.common import fail, given, set_fields
from langchain_moa.cli.fields import add_field_flag
from langchain_moa.graph import (
    CALL_END,
    CALL_ERROR,
    CALL_START,
    is_answer_node,
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


def add_parser(commands: Any) -> None:
    """Add ``moa chat`` and its flags."""
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


def _refuse(option: str, flags: dict[str, Any], hint: str = "") -> None:
    """Exit naming the first of ``flags`` given: it does not apply with ``option``."""
    for flag, value in flags.items():
        if value is not None:
            fail(f"{flag} does not apply with {option}{hint}")


POLICY_FLAGS = (
    "min_proposers",
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
    given = set_fields(args, *POLICY_FLAGS)
    if args.early_stop_threshold is not None and args.early_stop is None:
        fail("--early-stop-threshold needs --early-stop embedding")
    if args.early_stop is not None:
        given["early_stop"] = {"method": args.early_stop}
        if args.early_stop_threshold is not None:
            given["early_stop"]["threshold"] = args.early_stop_threshold
    return given


def _model(args: argparse.Namespace) -> ChatMoA:
    """The stack the flags describe, as a ``StackSpec`` and then a ``ChatMoA``."""
    policies = _policies(args)
    if args.config or args.preset:
        # Counts of the embedded stack's, not stack fields: the spec cannot name them.
        option = "--config" if args.config else "--preset"
        _refuse(option, {"--proposers": args.proposers, "--gguf": args.gguf})
    if args.config:
        _refuse(
            "--config",
            {"--aggregator": args.aggregator, "--layers": args.layers,
             "--max-tokens": args.max_tokens},
            ": set it in the file",
        )  # fmt: skip
        if not policies:
            return ChatMoA.from_config(args.config)
        # The file's spec under the flags, checked again as one spec.
        spec = load_stack(args.config)
        return ChatMoA.from_spec(StackSpec(**{**spec.fields(), **policies}))
    if args.preset:
        # Unset flags stay unset: the preset's own settings are its defaults. The spec
        # says what a preset does not take (its models, its layers).
        fields = set_fields(args, "aggregator", "layers", "max_tokens")
        return ChatMoA.from_spec(StackSpec(preset=args.preset, **fields, **policies))
    if args.model:
        _refuse(
            "--model",
            {"--proposers": args.proposers, "--gguf": args.gguf},
            " (embedded model only)",
        )
        spec = StackSpec(
            proposers=args.model,
            aggregator=args.aggregator or args.model[0],
            **set_fields(args, "layers", "max_tokens"),
            **policies,
        )
        return ChatMoA.from_spec(spec)
    if args.aggregator:
        fail("--aggregator needs --model proposers")
    return ChatMoA.local(
        layers=given(args.layers, LOCAL_LAYERS),
        proposers=given(args.proposers, LOCAL_PROPOSERS),
        max_tokens=given(args.max_tokens, LOCAL_MAX_TOKENS),
        model_path=args.gguf,
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
