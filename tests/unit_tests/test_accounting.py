from langchain_moa.accounting import ModelCall, by_layer, format_summary, redact, total_usage


def _call(layer, index, start, latency, *, usage=(10, 5), error=None, reason=None) -> ModelCall:
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
        "total: 4 calls, 20 in / 10 out tokens (1 call reported no usage), 4.6s"
    )


def test_redact_masks_keys() -> None:
    text = redact("Incorrect API key provided: sk-proj-abcdef123456. Authorization: Bearer xyz123")
    assert "abcdef123456" not in text
    assert "xyz123" not in text
    assert redact("api_key='hunter2hunter2'") == "[redacted]'"
