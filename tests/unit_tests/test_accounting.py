import pytest

from langchain_moa.accounting import (
    ModelCall,
    account,
    by_layer,
    format_summary,
    redact,
    total_usage,
)
from langchain_moa.costs import Rates


def _call(
    layer, index, start, latency, *, usage=(10, 5), error=None, reason=None, cost=None, tflops=None
) -> ModelCall:
    return ModelCall(
        turn=1,
        layer=layer,
        index=index,
        node=f"layer{layer}/m{index}",
        model="m",
        text=None if error else "t",
        usage=None
        if usage is None
        else {"input_tokens": usage[0], "output_tokens": usage[1], "total_tokens": sum(usage)},
        started_at=start,
        latency_s=latency,
        ttft_s=None,
        cost_usd=cost,
        tflops=tflops,
        error=error,
        reason=reason or ("other" if error else None),
        note=None,
    )


CALLS = [
    _call(1, 1, 100.0, 2.0),
    _call(1, 0, 100.0, 3.0),
    _call(1, 2, 100.5, 1.0, usage=None, error="CallTimeoutError: x", reason="timeout"),
    _call(2, 0, 103.0, 1.5, usage=None),
]


def test_total_usage_skips_calls_without_usage() -> None:
    assert total_usage(CALLS) == {"input_tokens": 20, "output_tokens": 10, "total_tokens": 30}
    assert total_usage([CALLS[3]]) is None


def test_by_layer_orders_by_proposer_index() -> None:
    layers = by_layer(CALLS)
    assert [[c["index"] for c in layer] for layer in layers] == [[0, 1, 2], [0]]


def test_format_summary() -> None:
    assert format_summary(CALLS, 4.6) == (
        "layer 1: 3 calls (1 failed: 1 timeout), 20 in / 10 out tokens, 3.0s | "
        "aggregator: 1 call, tokens n/a, 1.5s | "
        "total: 4 calls, 20 in / 10 out tokens (1 call reported no usage), cost n/a, 4.6s"
    )


def test_redact_masks_keys() -> None:
    text = redact("Incorrect API key provided: sk-proj-abcdef123456. Authorization: Bearer xyz123")
    assert "abcdef123456" not in text
    assert "xyz123" not in text
    assert redact("api_key='hunter2hunter2'") == "[redacted]'"


PRICED = [
    _call(1, 0, 100.0, 3.0, cost=0.25, tflops=2.0),
    _call(1, 1, 100.0, 2.0, cost=0.5, tflops=7.0),
    # Refused by the provider (a 429): nothing was served, nothing spent.
    _call(1, 2, 100.5, 4.0, usage=None, error="RateLimitError: x", reason="rate_limit"),
    _call(2, 0, 104.5, 1.5, cost=1.0, tflops=3.0),
]


def test_account_sums_layers_as_the_paper_does() -> None:
    accounting = account(PRICED, latency_s=6.2, ttft_s=5.0)
    first, aggregator = accounting["layers"]
    assert first["critical_path_s"] == 4.0  # the slowest call, failed or not
    assert first["cost_usd"] == 0.75
    assert first["tflops"] == 7.0  # the layer's largest call: its calls run side by side
    assert aggregator["critical_path_s"] == 1.5
    total = accounting["total"]
    assert total["calls"] == 4
    assert total["failures"] == 1
    assert total["cost_usd"] == pytest.approx(1.75)
    assert total["tflops"] == pytest.approx(10.0)
    assert total["critical_path_s"] == pytest.approx(5.5)
    assert (total["latency_s"], total["ttft_s"]) == (6.2, 5.0)
    assert total["usage"] == {"input_tokens": 30, "output_tokens": 15, "total_tokens": 45}


def test_a_call_that_may_have_been_served_costs_an_unknown_amount() -> None:
    # We stopped waiting; the provider may have answered, and billed, anyway.
    late = _call(1, 2, 100.5, 4.0, usage=None, error="CallTimeoutError: x", reason="timeout")
    total = account([*PRICED[:2], late, PRICED[3]], latency_s=6.0)["total"]
    assert total["cost_usd"] is None
    assert total["tflops"] is None


def test_the_aggregators_fallbacks_ran_one_after_another() -> None:
    failed = _call(2, 0, 104.5, 2.0, usage=(10, 0), error="BadResponseError: empty", cost=0.5)
    failed["reason"] = "bad_response"
    fallback = _call(2, 1, 106.5, 1.5, cost=1.0, tflops=3.0)
    failed["tflops"] = 1.0
    aggregator = account([*PRICED[:3], failed, fallback], latency_s=8.0)["layers"][-1]
    assert aggregator["critical_path_s"] == 3.5  # 2.0 then 1.5, not the larger
    assert aggregator["tflops"] == 4.0
    assert aggregator["cost_usd"] == 1.5


def test_an_unknown_cost_makes_the_total_unknown_never_zero() -> None:
    calls = [*PRICED[:3], _call(2, 0, 104.5, 1.5, cost=None, tflops=None)]
    total = account(calls, latency_s=6.0)["total"]
    assert total["cost_usd"] is None
    assert total["tflops"] is None
    assert format_summary(calls, 6.0).endswith("cost n/a, 6.0s")
    assert format_summary(PRICED, 6.0).endswith("$1.7500, 6.0s")


def test_rates_price_and_size_by_model_name() -> None:
    rates = Rates.extended(prices={"my-model": (1.0, 2.0)}, parameters={"my-model": 7})
    usage = {"input_tokens": 1000, "output_tokens": 500, "total_tokens": 1500}
    assert rates.cost_usd("my-model", usage) == pytest.approx(0.002)
    assert rates.tflops("my-model", usage) == pytest.approx(2 * 7e9 * 1500 / 1e12)
    # A provider prefix, another case or a GGUF file name find the default entry.
    assert rates.price("together:qwen/qwen1.5-72b-chat") == (0.9, 0.9)
    assert rates.active_parameters("SmolLM2-135M-Instruct.Q4_1.gguf") == 0.135
    assert rates.cost_usd("unknown-model", usage) is None
    assert rates.tflops("unknown-model", usage) is None
    assert rates.cost_usd("my-model", None) is None
    # The user's entry replaces the default's.
    assert Rates.extended(prices={"gpt-4o-2024-05-13": (2.5, 10.0)}).price("gpt-4o-2024-05-13") == (
        2.5,
        10.0,
    )
