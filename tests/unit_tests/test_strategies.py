"""Strategies beyond the paper, reference order and early stop: prompts and control flow."""

import asyncio
import warnings
from collections.abc import Sequence

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_openai import ChatOpenAI

from langchain_moa import ChatMoA, StackError, get_calls
from langchain_moa.graph.nodes import Aggregator
from langchain_moa.graph.review import REVIEW_PROMPT, aggregate, label, parse_ranking
from langchain_moa.graph.sequential import windows
from langchain_moa.stacks import (
    RankThenSynthesize,
    SelfMoA,
    SelfMoASeq,
    StackSpec,
    Strategy,
    load_stack,
)
from tests.unit_tests.scripted import ScriptedChatModel


def _system(messages: Sequence[BaseMessage]) -> str:
    return messages[0].text if isinstance(messages[0], SystemMessage) else ""


def _answers(moa: ChatMoA, question: str = "q", **kwargs) -> tuple[BaseMessage, list[dict]]:
    answer = moa.invoke([HumanMessage(question)], **kwargs)
    return answer, get_calls(answer)


# --- self-moa ---------------------------------------------------------------------------


def test_self_moa_samples_the_aggregator_in_every_proposer_slot() -> None:
    mixed = [ScriptedChatModel(model_name=n, reply=n) for n in ("a", "b", "c")]
    best = ScriptedChatModel(model_name="best", reply="best answer")
    moa = ChatMoA(proposers=mixed, aggregator=best, layers=3, strategy="self-moa")
    assert [[m.model_name for m in layer] for layer in moa.stack.layers] == [["best"] * 3] * 2
    _, calls = _answers(moa)
    assert {c["model"] for c in calls} == {"best"}
    assert len(calls) == 7
    assert all(m.log == [] for m in mixed)


def test_self_moa_takes_a_model_and_a_sample_count() -> None:
    other = ScriptedChatModel(model_name="other", reply="x")
    moa = ChatMoA(
        proposers=[ScriptedChatModel(model_name="a")],
        aggregator=ScriptedChatModel(model_name="agg"),
        layers=2,
        strategy=SelfMoA(model=other, samples=5),
    )
    assert [m.model_name for m in moa.stack.layers[0]] == ["other"] * 5


def test_self_moa_draws_differ_by_seed(monkeypatch) -> None:
    monkeypatch.setenv("LANGCHAIN_OPENAI_TCP_KEEPALIVE", "0")
    model = ChatOpenAI(model="m", base_url="http://127.0.0.1:9/v1", api_key="x", seed=10)
    moa = ChatMoA(proposers=[model], aggregator=model, layers=2, strategy={"name": "self-moa"})
    assert [m.seed for m in moa.stack.layers[0]] == [11]
    moa = ChatMoA(proposers=[model], aggregator=model, strategy={"name": "self-moa", "samples": 3})
    assert [m.seed for m in moa.stack.layers[0]] == [11, 12, 13]


# --- self-moa-seq -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "window", "steps"),
    [
        (3, 3, [[0, 1, 2]]),
        (2, 3, [[0, 1]]),
        (4, 3, [[0, 1, 2], [3]]),
        (7, 3, [[0, 1, 2], [3, 4], [5, 6]]),
        (6, 2, [[0, 1], [2], [3], [4], [5]]),
    ],
)
def test_windows_carry_the_synthesis_forward(count, window, steps) -> None:
    assert [list(r) for r in windows(count, window)] == steps


def _seq_stack(count: int, window: int) -> tuple[ChatMoA, ScriptedChatModel]:
    # Self-MoA-Seq samples one model: the proposers are draws of ``sampler``.
    draws = iter(range(100))
    sampler = ScriptedChatModel(model_name="p", reply=lambda _: f"answer {next(draws)}")
    steps = iter(range(1, 100))
    aggregator = ScriptedChatModel(model_name="agg", reply=lambda _: f"synthesis {next(steps)}")
    moa = ChatMoA(
        proposers=[ScriptedChatModel(model_name="unused")],
        aggregator=aggregator,
        layers=2,
        strategy=SelfMoASeq(window=window, model=sampler, samples=count),
    )
    return moa, aggregator


def test_self_moa_seq_aggregates_window_by_window() -> None:
    moa, aggregator = _seq_stack(6, 3)
    answer, calls = _answers(moa)
    assert answer.text == "synthesis 3"
    samples = [c["text"] for c in calls if c["layer"] == 1]
    assert sorted(samples) == [f"answer {i}" for i in range(6)]
    systems = [_system(call["messages"]) for call in aggregator.log]
    assert len(systems) == 3
    assert "1. {}\n2. {}\n3. {}".format(*samples[:3]) in systems[0]
    assert "1. synthesis 1\n2. {}\n3. {}".format(*samples[3:5]) in systems[1]
    assert f"1. synthesis 2\n2. {samples[5]}" in systems[2]
    assert samples[0] not in systems[1] + systems[2]
    final = [c for c in calls if c["layer"] == 2]
    assert [c["node"] for c in final] == ["aggregator/step-1", "aggregator/step-2", "aggregator"]
    assert final[1]["references"] == ["aggregator/step-1", "layer1/p-4", "layer1/p-5"]
    # The steps ran one after another: the layer's critical path is their sum.
    layer = answer.response_metadata["accounting"]["layers"][-1]
    assert layer["critical_path_s"] == pytest.approx(sum(c["latency_s"] for c in final))


def test_self_moa_seq_streams_only_the_last_step() -> None:
    moa, _ = _seq_stack(4, 3)
    chunks = list(moa.stream([HumanMessage("q")]))
    text = "".join(c.text for c in chunks)
    assert text == "synthesis 2"


def test_self_moa_seq_with_few_references_is_one_call() -> None:
    moa, aggregator = _seq_stack(3, 3)
    answer, calls = asyncio.run(_ainvoke(moa))
    assert answer.text == "synthesis 1"
    assert len(aggregator.log) == 1
    assert [c["node"] for c in calls if c["layer"] == 2] == ["aggregator"]


async def _ainvoke(moa: ChatMoA) -> tuple[BaseMessage, list[dict]]:
    answer = await moa.ainvoke([HumanMessage("q")])
    return answer, get_calls(answer)


# --- rank-then-synthesize ---------------------------------------------------------------


def test_parse_ranking_reads_the_final_ranking_only() -> None:
    reply = (
        "Response A is vague. Response B is right.\n"
        "FINAL RANKING:\n1. Response B\n2. Response C\n3. Response A\n4. Response Z"
    )
    assert parse_ranking(reply, 3) == [1, 2, 0]
    assert parse_ranking("Response B is best, then Response A.", 2) is None
    assert parse_ranking("FINAL RANKING: nothing here", 2) is None
    assert parse_ranking("FINAL RANKING:\n1. Response A\n2. Response A\n3. Response B", 2) == [0, 1]


def test_aggregate_orders_by_mean_place_and_puts_the_unranked_last() -> None:
    order, mean = aggregate([["b", "a"], ["b", "c"], ["a", "b"]], ["a", "b", "c", "d"])
    assert order == ["b", "a", "c", "d"]
    assert mean == {"a": 1.5, "b": pytest.approx(4 / 3), "c": 2.0}


def _reviewing(name: str, answer: str, ranking: str) -> ScriptedChatModel:
    def reply(messages: list[BaseMessage]) -> str:
        if "FINAL RANKING" in messages[-1].text:
            return f"Fine.\nFINAL RANKING:\n{ranking}"
        return answer

    return ScriptedChatModel(model_name=name, reply=reply)


def test_rank_then_synthesize_reviews_others_anonymously_then_synthesizes() -> None:
    # Each reviewer sees two answers as Response A and B, in proposer order, never its own.
    a = _reviewing("a", "answer of a", "1. Response B\n2. Response A")  # c over b
    b = _reviewing("b", "answer of b", "1. Response B\n2. Response A")  # c over a
    c = _reviewing("c", "answer of c", "1. Response A\n2. Response B")  # a over b
    aggregator = ScriptedChatModel(model_name="agg", reply="final")
    moa = ChatMoA(
        proposers=[a, b, c], aggregator=aggregator, layers=2, strategy=RankThenSynthesize()
    )
    nodes = set(moa.graph.get_graph().nodes)
    assert {"review/a", "review/b", "review/c", "review/join"} <= nodes
    answer, calls = _answers(moa, "What is 2+2?")
    review_of_a = a.log[1]["messages"][-1].text
    assert review_of_a == REVIEW_PROMPT.format(
        question="What is 2+2?",
        responses=f"{label(0)}:\nanswer of b\n\n{label(1)}:\nanswer of c",
    )
    assert "answer of a" not in review_of_a
    reviews = [c for c in calls if c["layer"] == 2]
    assert [r["references"] for r in reviews] == [
        ["layer1/b", "layer1/c"],
        ["layer1/a", "layer1/c"],
        ["layer1/a", "layer1/b"],
    ]
    ranking = answer.response_metadata["ranking"]
    # c: places 1, 1 -> 1.0; a: 2, 1 -> 1.5; b: 2, 2 -> 2.0
    assert ranking["order"] == ["layer1/c", "layer1/a", "layer1/b"]
    assert ranking["rankings"] == 3
    system = _system(aggregator.log[0]["messages"])
    assert system.startswith("An anonymous peer review ranked the responses below")
    assert "1. 1.00, 2. 1.50, 3. 2.00" in system
    assert "1. answer of c\n2. answer of a\n3. answer of b" in system
    assert [c["layer"] for c in calls if c["node"] == "aggregator"] == [3]
    assert len(answer.response_metadata["accounting"]["layers"]) == 3


def test_rank_then_synthesize_without_a_readable_ranking_keeps_the_order() -> None:
    proposers = [ScriptedChatModel(model_name=n, reply=f"answer of {n}") for n in ("a", "b")]
    aggregator = ScriptedChatModel(model_name="agg", reply="final")
    moa = ChatMoA(
        proposers=proposers, aggregator=aggregator, layers=2, strategy="rank-then-synthesize"
    )
    answer, _ = _answers(moa)
    assert answer.response_metadata["ranking"]["rankings"] == 0
    system = _system(aggregator.log[0]["messages"])
    assert "peer review" not in system
    assert "1. answer of a\n2. answer of b" in system


# --- reference order --------------------------------------------------------------------


def _shuffled(**kwargs) -> tuple[ChatMoA, ScriptedChatModel]:
    proposers = [ScriptedChatModel(model_name=f"p{i}", reply=f"answer {i}") for i in range(6)]
    aggregator = ScriptedChatModel(model_name="agg", reply="final")
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2, **kwargs)
    return moa, aggregator


def test_shuffle_records_the_order_read_and_replays_it_from_the_seed() -> None:
    moa, aggregator = _shuffled(reference_order="shuffle")
    orders = []
    for seed in range(8):
        answer, calls = _answers(moa, shuffle_seed=seed)
        assert answer.response_metadata["shuffle_seed"] == seed
        order = next(c["references"] for c in calls if c["node"] == "aggregator")
        assert sorted(order) == [f"layer1/p{i}" for i in range(6)]
        listed = "\n".join(f"{n}. answer {node[-1]}" for n, node in enumerate(order, start=1))
        assert listed in _system(aggregator.log[-1]["messages"])
        orders.append(order)
    assert len({tuple(o) for o in orders}) > 1
    _, calls = _answers(moa, shuffle_seed=3)
    assert next(c["references"] for c in calls if c["node"] == "aggregator") == orders[3]
    drawn, _ = _answers(moa)
    assert isinstance(drawn.response_metadata["shuffle_seed"], int)


def test_given_order_is_the_proposers_and_draws_no_seed() -> None:
    moa, _ = _shuffled()
    answer, calls = _answers(moa, shuffle_seed=3)
    order = next(c["references"] for c in calls if c["node"] == "aggregator")
    assert order == [f"layer1/p{i}" for i in range(6)]
    assert answer.response_metadata["shuffle_seed"] is None


# --- early stop -------------------------------------------------------------------------


def _layers(*replies: Sequence[str]) -> list[list[ScriptedChatModel]]:
    return [
        [ScriptedChatModel(model_name=f"m{i}", reply=text) for i, text in enumerate(layer)]
        for layer in replies
    ]


def test_early_stop_ends_the_layers_when_final_answers_agree() -> None:
    layers = _layers(
        ["So 9 + 9 = 18. #### 18", "The answer is 18.", "She gets $18"],
        ["x 1", "x 2", "x 3"],
        ["y 1", "y 2"],
    )
    aggregator = ScriptedChatModel(model_name="agg", reply="18")
    moa = ChatMoA(
        proposer_layers=layers, aggregator=aggregator, early_stop={"method": "final_answer"}
    )
    answer, calls = _answers(moa)
    assert all(m.log == [] for layer in layers[1:] for m in layer)
    assert sorted({c["layer"] for c in calls}) == [1, 4]
    stopped = answer.response_metadata["early_stop"]
    assert stopped["layer"] == 1
    assert stopped["calls_saved"] == 5
    layer1 = [c for c in calls if c["layer"] == 1]
    per_call = sum(c["usage"]["total_tokens"] for c in layer1) / 3
    assert stopped["tokens_saved"] == round(per_call * 5)
    assert "18" in stopped["detail"]
    assert "1. So 9 + 9 = 18. #### 18" in _system(aggregator.log[0]["messages"])


def test_early_stop_runs_on_when_answers_differ() -> None:
    layers = _layers(["#### 18", "#### 17"], ["#### 18", "#### 18"], ["#### 18", "#### 18"])
    moa = ChatMoA(
        proposer_layers=layers,
        aggregator=ScriptedChatModel(model_name="agg", reply="18"),
        early_stop={"method": "final_answer"},
    )
    answer, calls = asyncio.run(_ainvoke(moa))
    # Layer 2 agrees, so layer 3 is skipped; layer 1 did not.
    assert sorted({c["layer"] for c in calls}) == [1, 2, 4]
    assert answer.response_metadata["early_stop"]["layer"] == 2
    assert answer.response_metadata["early_stop"]["calls_saved"] == 2


def test_no_early_stop_on_the_last_layer_or_without_the_option() -> None:
    layers = _layers(["#### 1", "#### 1"], ["#### 1", "#### 1"])
    moa = ChatMoA(proposer_layers=layers, aggregator=ScriptedChatModel(model_name="agg"))
    answer, calls = _answers(moa)
    assert sorted({c["layer"] for c in calls}) == [1, 2, 3]
    assert answer.response_metadata["early_stop"] is None


class _Fixed(Embeddings):
    """Vectors by the text's first word: ``same`` texts point one way."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0] if t.startswith("same") else [0.0, 1.0] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def test_early_stop_by_embedding_similarity_takes_any_embeddings() -> None:
    agree = _layers(["same a", "same b"], ["z", "z"])
    moa = ChatMoA(
        proposer_layers=agree,
        aggregator=ScriptedChatModel(model_name="agg"),
        early_stop={"method": "embedding", "threshold": 0.99, "embeddings": _Fixed()},
    )
    answer, _ = _answers(moa)
    assert answer.response_metadata["early_stop"]["layer"] == 1
    differ = _layers(["same a", "other b"], ["z", "z"])
    moa = ChatMoA(**{**moa.fields(), "proposer_layers": differ})
    answer, calls = asyncio.run(_ainvoke(moa))
    assert answer.response_metadata["early_stop"] is None
    assert sorted({c["layer"] for c in calls}) == [1, 2, 3]


def test_early_stop_settings_are_checked() -> None:
    with pytest.raises(StackError, match=r"^early_stop.method: "):
        StackSpec(early_stop={"method": "vote"})
    with pytest.raises(StackError, match=r"^early_stop.threshold: only with method 'embedding'$"):
        StackSpec(early_stop={"threshold": 0.5})
    with pytest.raises(StackError, match=r"^early_stop.threshhold: unknown key"):
        StackSpec(early_stop={"method": "embedding", "threshhold": 0.5})


# --- choosing a strategy ----------------------------------------------------------------


def test_a_strategy_of_your_own_writes_the_answer() -> None:
    class Terse(Strategy):
        name = "terse"

        def final_node(self, **parts):
            return Aggregator(**{**parts, "prompt": "Answer in one word. Responses:"})

    aggregator = ScriptedChatModel(model_name="agg", reply="yes")
    moa = ChatMoA(
        proposers=[ScriptedChatModel(model_name="a", reply="ok")],
        aggregator=aggregator,
        layers=2,
        strategy=Terse(),
    )
    answer, _ = _answers(moa)
    assert answer.response_metadata["strategy"] == "terse"
    assert _system(aggregator.log[0]["messages"]) == "Answer in one word. Responses:\n1. ok"


def test_strategies_by_name_in_a_stack_file(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "proposers: [openai:a, openai:b]\naggregator: openai:c\n"
        "strategy: {name: self-moa-seq, window: 2, samples: 4}\n"
        "reference_order: shuffle\nearly_stop: {method: final_answer, min_agreeing: 0.5}\n"
    )
    spec = load_stack(path)
    assert spec.strategy == SelfMoASeq(window=2, samples=4)
    assert spec.reference_order == "shuffle"
    assert spec.early_stop is not None
    assert spec.early_stop.min_agreeing == 0.5
    path.write_text(
        "proposers: [openai:a]\naggregator: openai:c\nstrategy: {name: self-moa, n: 2}\n"
    )
    with pytest.raises(StackError, match=r"strategy: self-moa: n: extra inputs are not permitted"):
        load_stack(path)


# --- found in review --------------------------------------------------------------------


def test_per_turn_reuse_with_a_review_reads_the_proposals_not_the_reviews() -> None:
    a = _reviewing("a", "answer of a", "1. Response A")
    b = _reviewing("b", "answer of b", "1. Response A")
    aggregator = ScriptedChatModel(
        model_name="agg",
        reply=lambda m: (
            "done"
            if isinstance(m[-1], ToolMessage)
            else AIMessage("", tool_calls=[{"name": "look", "args": {}, "id": "1"}])
        ),
    )
    moa = ChatMoA(
        proposers=[a, b],
        aggregator=aggregator,
        layers=2,
        fanout="per_turn",
        strategy="rank-then-synthesize",
    ).bind_tools([{"type": "function", "function": {"name": "look", "parameters": {}}}])
    first = moa.invoke([HumanMessage("q")])
    second = moa.invoke([HumanMessage("q"), first, ToolMessage("seen", tool_call_id="1")])
    assert second.response_metadata["reused_references"] is True
    (call,) = get_calls(second)
    assert sorted(call["references"]) == ["layer1/a", "layer1/b"]
    assert "FINAL RANKING" not in _system(aggregator.log[-1]["messages"])


def test_self_moa_seq_steps_are_no_degradation_and_a_last_resort_keeps_its_place() -> None:
    moa, _ = _seq_stack(4, 2)
    answer, _ = _answers(moa)
    assert answer.response_metadata["degraded"] is False
    failing = ScriptedChatModel(model_name="agg", error="down")
    moa = ChatMoA(
        proposers=[ScriptedChatModel(model_name="p", reply="x")],
        aggregator=failing,
        layers=2,
        best_proposer_fallback=True,
        strategy=SelfMoASeq(window=2, samples=3, model=ScriptedChatModel(model_name="p")),
    )
    answer, calls = _answers(moa)
    final = [c for c in calls if c["layer"] == 2]
    assert len({c["index"] for c in final}) == len(final)
    assert final[-1]["node"] == "aggregator/best-proposer"
    assert answer.response_metadata["degraded"] is True


def test_early_stop_takes_a_pydantic_embeddings_and_a_strategy_a_chat_model() -> None:
    layers = _layers(["same", "same"], ["z", "z"])
    moa = ChatMoA(
        proposer_layers=layers,
        aggregator=ScriptedChatModel(model_name="agg"),
        early_stop={"method": "embedding", "embeddings": DeterministicFakeEmbedding(size=8)},
        strategy=SelfMoA(model=ScriptedChatModel(model_name="same-model", reply="same")),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        answer, _ = _answers(moa)
    assert answer.response_metadata["early_stop"]["layer"] == 1
    assert moa.strategy.options()["model"].startswith("ScriptedChatModel(")


def test_reviewers_leave_out_their_own_answers_by_model_when_layers_differ() -> None:
    a = _reviewing("a", "#### 42", "1. Response A")
    b = _reviewing("b", "#### 42", "1. Response A")
    moa = ChatMoA(
        proposer_layers=[[a, b], [b, a]],
        aggregator=ScriptedChatModel(model_name="agg"),
        strategy="rank-then-synthesize",
        early_stop={"method": "final_answer"},
    )
    answer, calls = _answers(moa)
    assert answer.response_metadata["early_stop"]["layer"] == 1
    reviews = {c["node"]: c["references"] for c in calls if c["node"].startswith("review/")}
    assert reviews == {"review/b": ["layer1/a"], "review/a": ["layer1/b"]}


def test_self_moa_samples_must_meet_min_proposers_and_labels_go_past_z() -> None:
    with pytest.raises(StackError, match=r"^min_proposers: 3 is more than the smallest layer's 2"):
        StackSpec(
            proposers=["openai:a"] * 3,
            aggregator="openai:a",
            min_proposers=3,
            strategy={"name": "self-moa", "samples": 2},
        )
    assert [label(i) for i in (0, 25, 26, 27, 701, 702)] == [
        "Response A", "Response Z", "Response AA", "Response AB", "Response ZZ", "Response AAA"
    ]  # fmt: skip
    assert parse_ranking("FINAL RANKING:\n1. Response AB\n2. Response A", 30) == [27, 0]


def test_a_shuffle_seed_must_be_an_integer() -> None:
    moa, _ = _shuffled(reference_order="shuffle")
    with pytest.raises(ValueError, match=r"^shuffle_seed must be an integer, got '7'$"):
        moa.invoke([HumanMessage("q")], shuffle_seed="7")


def test_a_strategy_of_ones_own_is_one_module_a_name_and_a_plan(monkeypatch) -> None:
    # What a user's module holds: the description, registered by name, and its plan.
    from langchain_moa.graph import strategies  # noqa: PLC0415 - the graph side's registry
    from langchain_moa.graph.plan import Plan  # noqa: PLC0415
    from langchain_moa.stacks import strategy  # noqa: PLC0415

    monkeypatch.setattr(strategy, "STRATEGIES", dict(strategy.STRATEGIES))
    monkeypatch.setattr(strategies, "PLANS", dict(strategies.PLANS))

    @strategy.register
    class OneWord(Strategy):
        name = "one-word"

    @strategies.plans(OneWord)
    def one_word(_: OneWord) -> Plan:
        return Plan(final=Aggregator, prompt="Answer in one word. Responses:")

    aggregator = ScriptedChatModel(model_name="agg", reply="yes")
    spec = StackSpec(
        proposers=[ScriptedChatModel(model_name="a", reply="ok")],
        aggregator=aggregator,
        layers=2,
        strategy="one-word",  # by name, as a stack file or --strategy gives it
    )
    answer, _ = _answers(ChatMoA.from_spec(spec))
    assert answer.response_metadata["strategy"] == "one-word"
    assert _system(aggregator.log[0]["messages"]) == "Answer in one word. Responses:\n1. ok"
