"""Staircase streaming: the aggregator writes in steps while the last layer still streams."""

import asyncio
import itertools
import random
import time
from collections.abc import Iterator, Sequence

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk

from langchain_moa import ChatMoA, get_calls
from langchain_moa.graph.nodes import LayerFailedError, Proposer
from langchain_moa.graph.staircase import StaircaseAggregator
from langchain_moa.graph.staircase_text import CONTINUE_PROMPT, UNFINISHED, Echo, sentence_ends
from langchain_moa.stacks import StackSpec
from langchain_moa.stacks.strategy import Staircase
from tests.unit_tests.scripted import ScriptedChatModel


def _words(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(1, count + 1))


def _aggregator(words: int = 6, **kwargs) -> ScriptedChatModel:
    """Step n replies ``sNa sNb sNc sNd. sNe ...``: a sentence ends at its 4th word.

    Which step wrote a word can be read off it.
    """
    steps = itertools.count(1)

    def reply(_: list) -> str:
        number = next(steps)
        return " ".join(f"s{number}{'abcdef'[i]}{'.' if i == 3 else ''}" for i in range(words))

    return ScriptedChatModel(model_name="agg", reply=reply, **kwargs)


def _stack(
    aggregator: ScriptedChatModel | None = None,
    *,
    slow_error: str | None = None,
    layers: int = 2,
    **options,
) -> tuple[ChatMoA, list[ScriptedChatModel], ScriptedChatModel]:
    fast = [
        ScriptedChatModel(model_name=name, reply=_words(f"{name}", 8), token_delay_s=0.005)
        for name in ("a", "b")
    ]
    slow = ScriptedChatModel(
        model_name="slow", reply=_words("z", 30), token_delay_s=0.03, error=slow_error
    )
    proposers = [*fast, slow]
    aggregator = aggregator or _aggregator()
    moa = ChatMoA(
        proposers=proposers,
        aggregator=aggregator,
        layers=layers,
        strategy=Staircase(step_tokens=4),
        **options,
    )
    return moa, proposers, aggregator


def _system(messages: Sequence[BaseMessage]) -> str:
    return messages[0].text


def _stream(moa: ChatMoA, mode: str) -> tuple[list[AIMessageChunk], AIMessageChunk]:
    question = [HumanMessage("q")]
    if mode == "sync":
        chunks = list(moa.stream(question))
    else:

        async def collect() -> list[AIMessageChunk]:
            return [chunk async for chunk in moa.astream(question)]

        chunks = asyncio.run(collect())
    return chunks, sum(chunks[1:], chunks[0])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_answer_starts_before_the_slowest_proposer_ends(mode) -> None:
    moa, proposers, aggregator = _stack()
    _, answer = _stream(moa, mode)
    slow = proposers[-1].log[0]
    first_step = aggregator.log[0]
    assert first_step["start"] < slow["end"]
    assert first_step["chunk_times"][0] < slow["end"]
    # Steps while the slow one streams, then the last step once it has finished.
    assert len(aggregator.log) >= 3
    assert aggregator.log[-1]["start"] > slow["end"]
    calls = get_calls(answer)
    nodes = [c["node"] for c in calls]
    assert nodes[:3] == ["layer1/a", "layer1/b", "layer1/slow"]
    steps = nodes[3:]
    assert steps == [f"aggregator/step-{n}" for n in range(1, len(steps))] + ["aggregator"]
    assert all(c["error"] is None for c in calls)
    # Time to first token of every streamed call, the answer's in the accounting.
    assert all(c["ttft_s"] is not None for c in calls)
    ttft = answer.response_metadata["accounting"]["total"]["ttft_s"]
    assert ttft is not None
    assert ttft < calls[2]["latency_s"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_streamed_chunks_are_the_steps_own_tokens(mode) -> None:
    moa, _, aggregator = _stack()
    chunks, answer = _stream(moa, mode)
    texts = [c.text for c in chunks if c.text]
    assert "".join(texts) == answer.text
    words = answer.text.split()
    # Each partial step stops after step_tokens of its 6 words; the last writes all 6.
    steps = len(aggregator.log)
    expected = [f"s{n}{letter}" for n in range(1, steps) for letter in "abcd"]
    expected += [f"s{steps}{letter}" for letter in "abcdef"]
    expected = [f"{word}." if word.endswith("d") else word for word in expected]
    assert words == expected
    # A token a chunk: the stream carries the model's chunks, not a finished text cut up.
    assert [t.strip() for t in texts] == expected
    calls = get_calls(answer)
    assert [c["text"].split() for c in calls[3:]] == [
        expected[4 * n : 4 * n + 4] for n in range(steps - 1)
    ] + [expected[-6:]]


def test_steps_read_prefixes_marked_unfinished_then_the_complete_answers() -> None:
    moa, proposers, aggregator = _stack()
    answer = moa.invoke([HumanMessage("q")])
    first, last = aggregator.log[0]["messages"], aggregator.log[-1]["messages"]
    slow_text = proposers[-1].reply
    assert UNFINISHED in _system(first)
    # The slow proposal's first words only, marked.
    assert "z1 z2 z3 z4" in _system(first)
    assert slow_text not in _system(first)
    assert isinstance(first[-1], HumanMessage)
    assert first[-1].text == "q"
    # The last step reads every proposal whole, and continues the answer so far.
    assert UNFINISHED not in _system(last)
    for proposer in proposers:
        assert f". {proposer.reply}" in _system(last)
    # The answer so far, to go on from, ends the system message; the question ends the chat.
    written = "".join(c["text"] for c in get_calls(answer)[3:-1])
    assert _system(last).endswith(CONTINUE_PROMPT.format(written=written))
    second = CONTINUE_PROMPT.format(written="s1a s1b s1c s1d.")
    assert _system(aggregator.log[1]["messages"]).endswith(second)
    assert CONTINUE_PROMPT[:30] not in _system(first)
    assert isinstance(last[-1], HumanMessage)
    assert last[-1].text == "q"


def test_invoke_records_every_step_and_its_accounting() -> None:
    moa, _, aggregator = _stack()
    answer = moa.invoke([HumanMessage("q")])
    calls = get_calls(answer)
    assert answer.response_metadata["strategy"] == "staircase"
    layers = answer.response_metadata["accounting"]["layers"]
    assert [layer["calls"] for layer in layers] == [3, len(aggregator.log)]
    partial = [c for c in calls if "/step-" in c["node"]]
    # A partial step closes its stream at step_tokens: no usage came (unknown, not zero).
    assert all(c["usage"] is None and c["note"] is None for c in partial)
    assert not answer.response_metadata["degraded"]
    last = calls[-1]
    assert last["node"] == "aggregator"
    assert last["usage"] is not None
    assert last["references"] == ["layer1/a", "layer1/b", "layer1/slow"]
    assert partial[0]["references"] == ["layer1/a", "layer1/b", "layer1/slow"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failed_proposer_is_recorded_and_the_others_go_on(mode) -> None:
    moa, _, _ = _stack(slow_error="boom")
    _, answer = _stream(moa, mode)
    calls = get_calls(answer)
    slow = next(c for c in calls if c["node"] == "layer1/slow")
    assert slow["error"] == "RuntimeError: boom"
    assert slow["reason"] == "other"
    assert calls[-1]["node"] == "aggregator"
    assert calls[-1]["references"] == ["layer1/a", "layer1/b"]
    assert answer.response_metadata["degraded"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_too_few_proposers_fail_the_layer(mode) -> None:
    moa, _, aggregator = _stack(slow_error="boom", min_proposers=3)
    with pytest.raises(LayerFailedError, match=r"layer 1: 2 of 3 .*layer1/slow: other"):
        _stream(moa, mode)
    assert aggregator.log == []


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_step_that_ends_by_itself_finishes_the_answer(mode) -> None:
    # Two words, fewer than step_tokens: the first step wrote the whole answer.
    moa, proposers, aggregator = _stack(_aggregator(words=2))
    _, answer = _stream(moa, mode)
    assert answer.text == "s1a s1b"
    assert len(aggregator.log) == 1
    calls = get_calls(answer)
    # It keeps the name it was announced under.
    assert calls[-1]["node"] == "aggregator/step-1"
    assert calls[-1]["note"] is None
    slow = next(c for c in calls if c["node"] == "layer1/slow")
    assert slow["error"] is None
    assert "stopped after" in slow["note"]
    assert slow["text"].startswith("z1 z2 z3 z4")
    assert slow["text"] != proposers[-1].reply


def test_fast_proposers_make_it_the_plain_aggregator() -> None:
    # Every proposal is complete before step_tokens: one call, as synthesize makes it.
    short = [ScriptedChatModel(model_name=n, reply="x y") for n in ("a", "b")]
    aggregator = _aggregator()
    moa = ChatMoA(proposers=short, aggregator=aggregator, strategy=Staircase(step_tokens=4))
    answer = moa.invoke([HumanMessage("q")])
    assert len(aggregator.log) == 1
    assert [c["node"] for c in get_calls(answer)][-1] == "aggregator"
    assert UNFINISHED not in _system(aggregator.log[0]["messages"])


def test_only_the_last_proposer_layer_is_streamed_inside_the_aggregator() -> None:
    # With early stop on: layer 1's answers disagree, so layer 2 is streamed.
    moa, proposers, _ = _stack(layers=3, early_stop={"method": "final_answer"})
    nodes = set(moa.graph.get_graph().nodes)
    assert {"layer1/a", "layer1/join"} <= nodes
    assert not {"layer2/a", "layer2/slow", "layer2/join"} & nodes
    answer = moa.invoke([HumanMessage("q")])
    calls = get_calls(answer)
    assert [c["layer"] for c in calls[:6]] == [1, 1, 1, 2, 2, 2]
    assert {c["node"] for c in calls if c["layer"] == 2} == {"layer2/a", "layer2/b", "layer2/slow"}
    # Layer 2 read layer 1's answers.
    assert proposers[0].reply in _system(proposers[0].log[1]["messages"])
    assert calls[-1]["layer"] == 3
    assert answer.response_metadata["early_stop"] is None


def test_early_stop_skips_the_streamed_layer() -> None:
    same = [ScriptedChatModel(model_name=n, reply="#### 18") for n in ("a", "b")]
    aggregator = _aggregator()
    moa = ChatMoA(
        proposers=same,
        aggregator=aggregator,
        layers=3,
        strategy=Staircase(step_tokens=4),
        early_stop={"method": "final_answer"},
    )
    answer = moa.invoke([HumanMessage("q")])
    assert answer.response_metadata["early_stop"]["layer"] == 1
    assert [c["node"] for c in get_calls(answer)] == ["layer1/a", "layer1/b", "aggregator"]
    assert all(len(m.log) == 1 for m in same)


def test_a_one_layer_stack_streams_from_begin_and_reuses_references() -> None:
    moa, proposers, aggregator = _stack(fanout="per_turn")
    assert not any(n.startswith("layer1/") for n in moa.graph.get_graph().nodes)
    state = moa.graph.invoke(
        {
            "messages": [HumanMessage("q")],
            "reuse": {"turn": 1, "references": ["r1", "r2"], "nodes": ["layer1/a", "layer1/b"]},
        }
    )
    assert state["reused"]
    assert all(m.log == [] for m in proposers)
    assert len(aggregator.log) == 1
    assert "1. r1\n2. r2" in _system(aggregator.log[0]["messages"])


def test_options_are_checked_and_selectable_by_name() -> None:
    spec = StackSpec(
        proposers=["openai:gpt-4o"],
        aggregator="openai:gpt-4o",
        strategy={"name": "staircase", "step_tokens": 8, "max_partial_steps": 2},
    )
    assert spec.strategy == Staircase(step_tokens=8, max_partial_steps=2)
    with pytest.raises(ValueError, match="step_tokens"):
        StackSpec(
            proposers=["openai:gpt-4o"],
            aggregator="openai:gpt-4o",
            strategy={"name": "staircase", "step_tokens": 0},
        )


def test_max_partial_steps_bounds_the_steps() -> None:
    moa, _, _ = _stack()
    aggregator = _aggregator()
    moa = ChatMoA(
        **{
            **moa.fields(),
            "aggregator": aggregator,
            "strategy": Staircase(step_tokens=4, max_partial_steps=1),
        }
    )
    answer = moa.invoke([HumanMessage("q")])
    assert [c["node"] for c in get_calls(answer)][3:] == ["aggregator/step-1", "aggregator"]
    assert len(aggregator.log) == 2


def _chunks(*texts: str) -> list[AIMessageChunk]:
    return [AIMessageChunk(content=t) for t in texts]


def test_echo_drops_a_restated_answer_and_passes_what_follows() -> None:
    echo = Echo("It is 24.")
    out = [piece.text for c in _chunks("It", " is", " 24", ". So", " 48") for piece in echo.feed(c)]
    assert out == [" So", " 48"]


def test_echo_passes_a_reply_that_departs_from_the_answer() -> None:
    echo = Echo("It is 24.")
    out = [piece.text for c in _chunks("It", " was", " 5") for piece in echo.feed(c)]
    assert out == ["It", " was", " 5"]
    assert [p.text for p in Echo("").feed(AIMessageChunk(content="x"))] == ["x"]


def test_a_partial_step_runs_on_to_the_end_of_its_sentence() -> None:
    # No sentence ends in its first 6 words: a step with step_tokens=4 writes 6 words
    # and its sentence's end, never more than twice step_tokens.
    steps = itertools.count(1)
    aggregator = ScriptedChatModel(
        model_name="agg",
        reply=lambda _: f"w{next(steps)} " * 5 + "end. more words here and there",
    )
    moa, _, _ = _stack(aggregator)
    answer = moa.invoke([HumanMessage("q")])
    first = next(c for c in get_calls(answer) if c["node"] == "aggregator/step-1")
    assert first["text"].split()[-1] == "end."
    assert sentence_ends("It is 24 cm.\n")
    assert not sentence_ends("It is 0.")
    assert sentence_ends("It is one.")


def _add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_with_tools_bound_the_layer_runs_and_one_step_answers_with_tools(mode) -> None:
    moa, proposers, aggregator = _stack()
    bound = moa.bind_tools([_add])
    question = [HumanMessage("q")]
    answer = bound.invoke(question) if mode == "sync" else asyncio.run(bound.ainvoke(question))
    calls = get_calls(answer)
    assert [c["node"] for c in calls] == ["layer1/a", "layer1/b", "layer1/slow", "aggregator"]
    assert all(len(p.log) == 1 for p in proposers)
    # One call, after every proposal, with the tools and every complete reference.
    assert len(aggregator.log) == 1
    assert aggregator.log[0]["kwargs"].get("tools")
    assert UNFINISHED not in _system(aggregator.log[0]["messages"])
    assert calls[-1]["references"] == ["layer1/a", "layer1/b", "layer1/slow"]


class _Stalling(ScriptedChatModel):
    """Step 1 writes a word, stalls past its timeout, then writes on; later steps are quick."""

    calls: int = 0

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator:
        self.calls += 1
        number = self.calls
        self.log.append({"messages": messages, "start": time.perf_counter()})
        for i, letter in enumerate("abcdef"):
            time.sleep(0.6 if number == 1 and i == 1 else 0.005)
            word = f"{' ' if i else ''}s{number}{letter}"
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))


def test_a_step_abandoned_at_its_timeout_sends_nothing_more() -> None:
    moa, _, _ = _stack(
        _Stalling(model_name="agg"), timeout_s=0.3, layer_policies=[{"timeout_s": 10}]
    )
    chunks = list(moa.stream([HumanMessage("q")]))
    answer = sum(chunks[1:], chunks[0])
    time.sleep(0.8)  # step 1's thread writes on meanwhile
    text = "".join(c.text for c in chunks)
    assert text.startswith("s1a ")
    # What step 1 wrote after it was recorded as failed went nowhere.
    assert "s1b" not in text
    step = next(c for c in get_calls(answer) if c["node"] == "aggregator/step-1")
    assert step["reason"] == "timeout"
    assert text == answer.text


def test_partial_steps_show_the_references_in_the_runs_shuffled_order() -> None:
    def order(seed: int) -> list[int]:
        positions = [0, 1, 2]
        random.Random(f"{seed}/1").shuffle(positions)  # noqa: S311 - the join's order
        return positions

    # A seed whose order for layer 1 is not the proposers' own.
    seed = next(n for n in range(100) if order(n) != [0, 1, 2])
    moa, _, _ = _stack(reference_order="shuffle")
    answer = moa.invoke([HumanMessage("q")], shuffle_seed=seed)
    calls = get_calls(answer)
    shown = calls[-1]["references"]
    assert shown != ["layer1/a", "layer1/b", "layer1/slow"]
    partial = [c for c in calls if "/step-" in c["node"]]
    assert partial
    assert all(c["references"] == shown for c in partial)


def test_with_a_reference_filter_there_are_no_partial_steps() -> None:
    moa, proposers, aggregator = _stack(reference_filter="cluster")
    answer = moa.invoke([HumanMessage("q")])
    assert all(len(p.log) == 1 for p in proposers)
    assert len(aggregator.log) == 1
    assert UNFINISHED not in _system(aggregator.log[0]["messages"])
    assert [c["node"] for c in get_calls(answer)][3:] == ["aggregator"]


class _Events(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[float, str, str | None]] = []

    def on_custom_event(self, name, data, **kwargs) -> None:
        self.events.append((time.perf_counter(), name, data.get("node")))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_after_the_layer_fails_no_proposer_is_recorded_or_announced(mode) -> None:
    fast = [ScriptedChatModel(model_name=n, reply=_words(n, 40), token_delay_s=0.01) for n in "ab"]
    bad = ScriptedChatModel(model_name="bad", reply="x", error="boom")
    moa = ChatMoA(
        proposers=[*fast, bad],
        aggregator=_aggregator(),
        layers=2,
        strategy=Staircase(step_tokens=4),
        min_proposers=3,
    )
    handler = _Events()
    config = {"callbacks": [handler]}
    question = [HumanMessage("q")]

    def run() -> object:
        if mode == "sync":
            return moa.invoke(question, config=config)
        return asyncio.run(moa.ainvoke(question, config=config))

    with pytest.raises(LayerFailedError):
        run()
    raised = time.perf_counter()
    time.sleep(0.3)  # the proposers' threads reach their next chunk meanwhile
    assert [(name, node) for at, name, node in handler.events if at > raised] == []


@pytest.mark.parametrize("empty_step", [1, 2])
def test_a_step_that_adds_nothing_is_failed_and_the_last_step_takes_over(empty_step) -> None:
    steps = itertools.count(1)

    def reply(_: list) -> str:
        number = next(steps)
        if number == empty_step:
            return ""
        return " ".join(f"s{number}{'abcdef'[i]}{'.' if i == 3 else ''}" for i in range(6))

    moa, proposers, aggregator = _stack(ScriptedChatModel(model_name="agg", reply=reply))
    answer = moa.invoke([HumanMessage("q")])
    calls = get_calls(answer)
    empty = next(c for c in calls if c["node"] == f"aggregator/step-{empty_step}")
    assert "added nothing" in empty["error"]
    # The proposals were not stopped: the last step read them whole and wrote on.
    slow = next(c for c in calls if c["node"] == "layer1/slow")
    assert slow["note"] is None
    assert slow["text"] == proposers[-1].reply
    assert calls[-1]["node"] == "aggregator"
    assert calls[-1]["error"] is None
    assert answer.text.split()[-1] == f"s{len(aggregator.log)}f"


class _Cut(ScriptedChatModel):
    """Step 1 stops after two words with finish reason ``length``; later steps as usual."""

    calls: int = 0

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator:
        self.calls += 1
        number = self.calls
        self.log.append({"messages": messages, "start": time.perf_counter()})
        words = 2 if number == 1 else 6
        for i in range(words):
            time.sleep(0.005)
            word = f"{' ' if i else ''}s{number}{'abcdef'[i]}{'.' if i == 3 else ''}"
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        if number == 1:
            metadata = {"finish_reason": "length"}
            yield ChatGenerationChunk(
                message=AIMessageChunk(content="", response_metadata=metadata)
            )


def test_a_step_cut_by_the_token_limit_does_not_end_the_answer() -> None:
    moa, proposers, aggregator = _stack(_Cut(model_name="agg"))
    answer = moa.invoke([HumanMessage("q")])
    calls = get_calls(answer)
    assert len(aggregator.log) > 1
    assert answer.text.startswith("s1a s1b s2a")
    slow = next(c for c in calls if c["node"] == "layer1/slow")
    assert slow["text"] == proposers[-1].reply
    assert [c["node"] for c in calls][3] == "aggregator/step-1"


class _Breaks(ScriptedChatModel):
    """Step 2 breaks off after two words; the other steps write six."""

    calls: int = 0

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator:
        self.calls += 1
        number = self.calls
        self.log.append({"messages": messages, "start": time.perf_counter()})
        for i in range(6):
            if number == 2 and i == 2:
                msg = "connection reset"
                raise RuntimeError(msg)
            time.sleep(0.005)
            word = f"{' ' if i else ''}s{number}{'abcdef'[i]}{'.' if i == 3 else ''}"
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))


def test_a_failed_steps_record_keeps_the_text_it_sent_out() -> None:
    moa, _, _ = _stack(_Breaks(model_name="agg"))
    answer = moa.invoke([HumanMessage("q")])
    steps = [c for c in get_calls(answer) if c["node"].startswith("aggregator")]
    failed = next(c for c in steps if c["node"] == "aggregator/step-2")
    assert failed["error"] == "RuntimeError: connection reset"
    assert failed["text"] == " s2a s2b"
    assert "".join(c["text"] for c in steps) == answer.text


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_every_aggregator_call_ends_under_the_name_it_started_with(mode) -> None:
    for aggregator in (_aggregator(words=2), _aggregator()):
        moa, _, _ = _stack(aggregator)
        handler = _Events()
        config = {"callbacks": [handler]}
        question = [HumanMessage("q")]
        if mode == "sync":
            moa.invoke(question, config=config)
        else:
            asyncio.run(moa.ainvoke(question, config=config))
        events = [(name, node) for _, name, node in handler.events if node.startswith("aggregator")]
        started = [node for name, node in events if name == "moa_call_start"]
        ended = [node for name, node in events if name != "moa_call_start"]
        assert started == ended


def test_async_steps_build_their_prompts_with_ainputs(monkeypatch) -> None:
    built: list[str] = []
    original = StaircaseAggregator.ainputs

    async def ainputs(self, state, model=None):
        built.append(self.name)
        return await original(self, state, model)

    monkeypatch.setattr(StaircaseAggregator, "ainputs", ainputs)
    moa, _, aggregator = _stack()
    answer = asyncio.run(moa.ainvoke([HumanMessage("q")]))
    steps = [c["node"] for c in get_calls(answer) if c["node"].startswith("aggregator")]
    assert len(steps) == len(aggregator.log) > 1
    assert built == steps


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_proposal_whose_record_fails_raises_rather_than_hangs(mode, monkeypatch) -> None:
    original = Proposer.record

    def record(self, *args, **kwargs):
        if self.name == "layer1/slow":
            msg = "record broke"
            raise RuntimeError(msg)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Proposer, "record", record)
    moa, _, _ = _stack()

    async def run() -> object:
        if mode == "sync":
            call = asyncio.to_thread(moa.invoke, [HumanMessage("q")])
        else:
            call = moa.ainvoke([HumanMessage("q")])
        return await asyncio.wait_for(call, timeout=10)

    # Before: the node waited for ever on a proposal never marked done.
    with pytest.raises(RuntimeError, match="record broke"):
        asyncio.run(run())
