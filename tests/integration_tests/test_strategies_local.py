"""Every strategy, early stop and shuffled references, end to end on the embedded model.

Short generations: these check that each strategy's calls happen, in its
order, over real HTTP to llama.cpp, and that its records say so; the
comparison of their quality is ``moa eval ablation --axes strategies``.
"""

import asyncio

from langchain_core.messages import HumanMessage

from langchain_moa import ChatMoA, get_calls

SHORT = 12
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


def _ask(moa: ChatMoA, **kwargs):
    answer = moa.invoke([HumanMessage(QUESTION)], **kwargs)
    calls = get_calls(answer)
    assert answer.text.strip()
    assert all(c["error"] is None for c in calls), [c["error"] for c in calls]
    return answer, calls


def test_synthesize_and_rank(server) -> None:
    _, calls = _ask(ChatMoA.local(server=server, max_tokens=SHORT))
    assert [c["layer"] for c in calls] == [1, 1, 1, 2]
    moa = ChatMoA.local(server=server, max_tokens=SHORT, strategy="rank")
    ranked = moa.invoke([HumanMessage(QUESTION)])
    calls = get_calls(ranked)
    proposals = [c["text"] for c in calls if c["layer"] == 1]
    assert all(c["error"] is None for c in calls[:-1]), [c["error"] for c in calls]
    ranker = calls[-1]
    # The answer is one of the proposals, verbatim.
    assert ranked.text in proposals
    if ranker["error"] is not None:
        # A 135M ranker may write prose instead of a number: said in its record,
        # and the first proposal is the answer.
        assert ranker["error"].startswith("ValueError: no response number 1-3 in the reply")
        assert ranked.text == proposals[0]


def test_self_moa_samples_one_model_with_different_seeds(server) -> None:
    moa = ChatMoA.local(
        server=server, max_tokens=SHORT, strategy={"name": "self-moa", "samples": 4}
    )
    seeds = [m.seed for m in moa.stack.layers[0]]
    assert len(set(seeds)) == 4
    _, calls = _ask(moa)
    assert [c["layer"] for c in calls] == [1] * 4 + [2]


def test_self_moa_seq_aggregates_in_windows(server) -> None:
    moa = ChatMoA.local(
        server=server,
        max_tokens=SHORT,
        strategy={"name": "self-moa-seq", "samples": 5, "window": 3},
    )
    answer, calls = _ask(moa)
    final = [c for c in calls if c["layer"] == 2]
    assert [c["node"] for c in final] == ["aggregator/step-1", "aggregator"]
    # The last step read the first step's synthesis and the two samples left.
    assert final[1]["references"][0] == "aggregator/step-1"
    assert len(final[1]["references"]) == 3
    assert answer.text == final[1]["text"]


def test_rank_then_synthesize_reviews_before_the_answer(server) -> None:
    moa = ChatMoA.local(server=server, max_tokens=SHORT, strategy="rank-then-synthesize")
    answer, calls = _ask(moa)
    reviews = [c for c in calls if c["layer"] == 2]
    assert len(reviews) == 3
    # Each reviewer read the two other answers, never its own.
    for review in reviews:
        assert len(review["references"]) == 2
        assert review["node"].split("/")[1] not in {r.split("/")[1] for r in review["references"]}
    assert [c["layer"] for c in calls if c["node"] == "aggregator"] == [3]
    assert answer.response_metadata["ranking"]["order"]


def test_shuffle_and_early_stop_async(server) -> None:
    moa = ChatMoA.local(
        server=server,
        max_tokens=SHORT,
        layers=3,
        reference_order="shuffle",
        early_stop={"method": "embedding", "threshold": -1.0},
    )
    answer = asyncio.run(moa.ainvoke([HumanMessage(QUESTION)], shuffle_seed=5))
    calls = get_calls(answer)
    # Any two answers agree at a threshold of -1: layer 1 ends the proposer layers.
    assert answer.response_metadata["early_stop"]["layer"] == 1
    assert answer.response_metadata["early_stop"]["calls_saved"] == 3
    assert sorted({c["layer"] for c in calls}) == [1, 3]
    assert answer.response_metadata["shuffle_seed"] == 5
    order = next(c["references"] for c in calls if c["node"] == "aggregator")
    assert sorted(order) == sorted(c["node"] for c in calls if c["layer"] == 1)
