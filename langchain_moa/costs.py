"""What a call costs: US$ from a price table, and the paper's TFLOPs proxy from model sizes.

The paper (Wang et al., 2024, its budget analysis) prices every call at its
provider's list price per token, and approximates latency by TFLOPs: a call
costs ``2 x active parameters x tokens`` floating-point operations (the
forward pass's rule of thumb), a layer costs its largest call (its calls run
side by side), and a query the sum over its layers.

Both tables are plain data that users extend or override (``StackSpec``'s
``prices`` and ``parameters``). A model in neither gives ``None``, never 0:
an unknown cost must not read as a free one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from langchain_core.messages.ai import UsageMetadata

Prices = Mapping[str, tuple[float, float]]
"""Model name -> (US$ per million input tokens, US$ per million output tokens)."""
Parameters = Mapping[str, float]
"""Model name -> active parameters per token, in billions."""

_T = TypeVar("_T")

PRICES: Prices = MappingProxyType(
    {
        # Together AI's serverless list prices as the paper used them (mid-2024):
        # one price for input and output.
        "Qwen/Qwen1.5-110B-Chat": (1.8, 1.8),
        "Qwen/Qwen1.5-72B-Chat": (0.9, 0.9),
        "microsoft/WizardLM-2-8x22B": (1.2, 1.2),
        "meta-llama/Llama-3-70b-chat-hf": (0.9, 0.9),
        "mistralai/Mixtral-8x22B-Instruct-v0.1": (1.2, 1.2),
        "databricks/dbrx-instruct": (1.2, 1.2),
        # OpenAI's list prices at the paper's time.
        "gpt-4o-2024-05-13": (5.0, 15.0),
        "gpt-4-turbo-2024-04-09": (10.0, 30.0),
        # The embedded model runs on the user's own machine: no API price.
        "SmolLM2-135M-Instruct": (0.0, 0.0),
    }
)
"""List prices the defaults know, dated: prices move, so pass today's in ``prices``."""

_GPT4_ASSUMED = 8 * 200.0
"""The paper's assumption for OpenAI's undisclosed GPT-4-class models: 8 x 200B.

The paper's proxy counts all of them as active: it states the size, not a routing."""

PARAMETERS: Parameters = MappingProxyType(
    {
        "Qwen/Qwen1.5-110B-Chat": 111.0,
        "Qwen/Qwen1.5-72B-Chat": 72.0,
        # Mixtures of experts count the parameters one token passes through.
        "microsoft/WizardLM-2-8x22B": 39.0,  # 141B in all, 2 of 8 experts a token
        "meta-llama/Llama-3-70b-chat-hf": 70.0,
        "mistralai/Mixtral-8x22B-Instruct-v0.1": 39.0,
        "databricks/dbrx-instruct": 36.0,  # 132B in all, 4 of 16 experts a token
        "gpt-4o-2024-05-13": _GPT4_ASSUMED,
        "gpt-4-turbo-2024-04-09": _GPT4_ASSUMED,
        "SmolLM2-135M-Instruct": 0.135,
    }
)
"""Active parameters (billions) per model: published sizes, and the paper's
assumption for closed models (``_GPT4_ASSUMED``)."""


_QUANTIZATION = re.compile(r"[.-](?:i?q\d\w*|f16|f32|bf16)$")
"""A GGUF file's quantization suffix (``.Q4_1``, ``-Q4_K_M``, ``-f16``...)."""


def _short(name: str) -> str:
    """A model name without case, path or GGUF file suffix.

    ``Qwen/Qwen1.5-72B-Chat`` and ``qwen1.5-72b-chat`` both give
    ``qwen1.5-72b-chat``; ``SmolLM2-135M-Instruct.Q4_1.gguf`` gives
    ``smollm2-135m-instruct``. A tag stays (``llama3.1:8b`` is not ``qwen2:8b``).
    """
    name = name.rsplit("/", 1)[-1].lower()
    if name.endswith(".gguf"):
        name = _QUANTIZATION.sub("", name.removesuffix(".gguf"))
    return name


def _lookup(table: Mapping[str, _T], by_short: Mapping[str, _T], model: str) -> _T | None:
    """``table``'s entry for ``model``: by exact name, then by its short name."""
    if model in table:
        return table[model]
    return by_short.get(_short(model))


def _over(defaults: Mapping[str, _T], given: Mapping[str, _T]) -> Mapping[str, _T]:
    """``given`` over ``defaults``: a default goes when a given entry has its short name."""
    replaced = {_short(name) for name in given}
    kept = {name: value for name, value in defaults.items() if _short(name) not in replaced}
    return MappingProxyType({**kept, **given})


@dataclass(frozen=True)
class Rates:
    """The price and parameter tables a stack's calls are costed with."""

    prices: Prices = field(default_factory=lambda: PRICES)
    parameters: Parameters = field(default_factory=lambda: PARAMETERS)
    _short_prices: Prices = field(init=False, repr=False, compare=False)
    _short_parameters: Parameters = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Index the tables by short name once: every call's record looks its model up."""
        for name, table in (("prices", self.prices), ("parameters", self.parameters)):
            # The last entry of a short name wins: the user's come after the defaults.
            index = {_short(model): value for model, value in table.items()}
            object.__setattr__(self, f"_short_{name}", index)

    @classmethod
    def extended(cls, prices: Prices | None = None, parameters: Parameters | None = None) -> Rates:
        """The default tables with the user's entries added or replacing theirs.

        A user's entry replaces a default of the same short name too
        (``qwen1.5-72b-chat`` replaces ``Qwen/Qwen1.5-72B-Chat``).
        """
        return cls(
            prices=_over(PRICES, prices or {}),
            parameters=_over(PARAMETERS, parameters or {}),
        )

    def price(self, model: str) -> tuple[float, float] | None:
        """US$ per million input and output tokens, or None when unknown."""
        return _lookup(self.prices, self._short_prices, model)

    def active_parameters(self, model: str) -> float | None:
        """Billions of active parameters, or None when unknown."""
        return _lookup(self.parameters, self._short_parameters, model)

    def cost_usd(self, model: str, usage: UsageMetadata | None) -> float | None:
        """One call's cost; None when its usage or the model's price is unknown."""
        price = self.price(model)
        if usage is None or price is None:
            return None
        per_input, per_output = price
        return (usage["input_tokens"] * per_input + usage["output_tokens"] * per_output) / 1e6

    def tflops(self, model: str, usage: UsageMetadata | None) -> float | None:
        """One call's TFLOPs, ``2 x active parameters x tokens``; None when either is unknown."""
        billions = self.active_parameters(model)
        if usage is None or billions is None:
            return None
        tokens = usage["input_tokens"] + usage["output_tokens"]
        return 2 * billions * 1e9 * tokens / 1e12


def known_sum(values: Iterable[float | None]) -> float | None:
    """The sum, or None if any value is unknown: an unknown part makes the whole unknown."""
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def layer_tflops(calls: Iterable[float | None], *, sequential: bool = False) -> float | None:
    """A layer's TFLOPs from its calls': the largest, as its calls run side by side.

    With ``sequential`` (an aggregator and its fallbacks, tried one after
    another) they add up. None if any is unknown; a query's TFLOPs are its
    layers' summed (``known_sum``).
    """
    values = list(calls)
    if sequential or None in values:
        return known_sum(values)
    return max((v for v in values if v is not None), default=0.0)
