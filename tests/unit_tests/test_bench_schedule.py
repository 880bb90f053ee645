"""The benchmark server's schedule maths and the critical path read from it."""

import math

import pytest

from langchain_moa.bench.measure import critical_path, stages
from langchain_moa.bench.server import (
    TAIL_CAP_S,
    Behaviour,
    Record,
    Schedule,
    ScheduledServer,
    behaviours_from_json,
    behaviours_json,
    draw,
    group_of,
    query_of,
    request_seed,
    tool_arguments,
    tool_results,
)


def test_schedule_times_tokens_after_the_first() -> None:
    schedule = Schedule(first_token_s=0.5, tokens=11, tokens_per_s=100.0)
    assert schedule.token_at(0) == 0.5
    assert schedule.token_at(10) == pytest.approx(0.6)
    assert schedule.total_s == pytest.approx(0.6)
    # No pace: every token comes with the first.
    assert Schedule(0.5, 11, 0.0).total_s == 0.5


def test_draw_is_seeded_by_the_request() -> None:
    behaviour = Behaviour(first_token_s=(0.2, 0.5))
    seed = request_seed(0, "m.a", [{"role": "user", "content": "hi"}])
    assert draw(behaviour, seed) == draw(behaviour, seed)
    others = {draw(behaviour, request_seed(0, f"m.{i}", [])).first_token_s for i in range(50)}
    assert len(others) == 50
    assert all(0.2 <= s <= 0.5 for s in others)


def test_heavy_tail_draws_are_late_and_capped() -> None:
    always = Behaviour(first_token_s=(0.1, 0.1), tail_p=1.0, tail_scale_s=2.0, tail_alpha=0.5)
    drawn = [draw(always, str(i)).first_token_s for i in range(200)]
    assert all(2.0 <= s <= TAIL_CAP_S for s in drawn)
    assert max(drawn) == TAIL_CAP_S


def test_inline_and_registered_behaviours() -> None:
    server = ScheduledServer({"slow": Behaviour.fixed(1.0)})
    assert server.behaviour("slow.L0.p1") == Behaviour.fixed(1.0)
    assert server.behaviour("p-0.35s.x") == Behaviour.fixed(0.35)
    assert server.behaviour("unknown") is None
    assert group_of("p-0.35s.x") == "p-0.35s"
    assert group_of("slow.L0.p1") == "slow"


def test_query_of_reads_the_last_user_message() -> None:
    messages = [
        {"role": "system", "content": "[q9] references"},
        {"role": "user", "content": [{"type": "text", "text": "[q3] why?"}]},
    ]
    assert query_of(messages) == 3
    assert query_of([{"role": "user", "content": "no tag"}]) is None


def _record(model: str, total_s: float, first_s: float | None = None) -> Record:
    first = total_s if first_s is None else first_s
    pace = 0.0 if first == total_s else 1 / (total_s - first)
    return Record(model, 1, Schedule(first, 2, pace), arrived=0.0)


def test_critical_path_sums_each_stages_slowest_call() -> None:
    records = [
        _record("a.L0.p0", 0.3),
        _record("a.L0.p1", 0.5),
        _record("a.L1.p0", 0.4),
        _record("a.L1.p1", 0.2),
        _record("b.agg", 0.9, first_s=0.25),
    ]
    by_stage = stages(records)[1]
    assert critical_path(by_stage) == pytest.approx(0.5 + 0.4 + 0.9)
    assert critical_path(by_stage, to_first_token=True) == pytest.approx(0.5 + 0.4 + 0.25)
    assert math.isnan(records[0].first_token)


def test_behaviours_and_records_survive_json() -> None:
    behaviours = {
        "heavy": Behaviour(first_token_s=(0.2, 0.4), tail_p=0.2, tail_scale_s=1.5),
        "agent": Behaviour.fixed(0.3, tool_calls=3),
    }
    assert behaviours_from_json(behaviours_json(behaviours)) == behaviours
    done = Record("a.agg", 2, Schedule(0.3, 4, 10.0), 1.0, 1.3, 1.6, stream=True, tool_call=True)
    assert Record.from_json(done.to_json()) == done
    pending = Record.from_json(_record("a.L0.p0", 0.3).to_json())
    # NaN is not JSON: a time not reached yet travels as null.
    assert _record("a.L0.p0", 0.3).to_json()["ended"] is None
    assert math.isnan(pending.first_token)
    assert math.isnan(pending.ended)


def test_tool_results_count_since_the_last_user_message() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "tool", "content": "old"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": None},
        {"role": "tool", "content": "a"},
        {"role": "tool", "content": "b"},
    ]
    assert tool_results(messages) == 2
    assert tool_results(messages[:3]) == 0


def test_tool_arguments_follow_the_schema() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {
                    "item": {"type": "string"},
                    "count": {"type": "integer", "default": 3},
                    "exact": {"type": "boolean"},
                },
            },
        },
    }
    assert tool_arguments(tool) == {"item": "x", "count": 3, "exact": True}
    assert tool_arguments({"type": "function", "function": {"name": "now"}}) == {}
