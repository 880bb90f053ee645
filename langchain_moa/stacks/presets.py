"""Named stacks: the paper's MoA set-ups and the embedded one, as stack specs.

The paper's stacks (``moa``, ``moa-lite``, ``moa-gpt4o``) use the open models
its reference code (togethercomputer/MoA) called on Together's API, under the
same model ids, so any OpenAI-compatible server that serves those names (vLLM,
a gateway) can stand in for Together with ``base_url``. Each preset is plain
data: a ``StackSpec`` whose entries name their key's environment variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from langchain_moa.stacks.spec import LOCAL_MODEL, ModelConfig, StackSpec

TOGETHER_BASE_URL = "https://api.together.xyz/v1"
"""Together's OpenAI-compatible endpoint, where the paper's open models ran."""
TOGETHER_API_KEY_ENV = "TOGETHER_API_KEY"
"""The environment variable the reference code reads Together's key from."""
OPENAI_API_KEY_ENV = "OPENAI_API_KEY"
"""The environment variable OpenAI's key is read from (GPT-4o)."""

PAPER_MAX_TOKENS = 2048
"""The reference code's max_tokens for AlpacaEval and FLASK generation."""
PAPER_TEMPERATURE = 0.7
"""The reference code's temperature everywhere."""

PAPER_PROPOSERS = (
    "microsoft/WizardLM-2-8x22B",
    "Qwen/Qwen1.5-110B-Chat",
    "Qwen/Qwen1.5-72B-Chat",
    "meta-llama/Llama-3-70b-chat-hf",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "databricks/dbrx-instruct",
)
"""The paper's six proposers as Together model ids, in the order of the
reference code's ``reference_models`` (which fixes how references are numbered)."""
GPT_4O = "gpt-4o-2024-05-13"
"""The GPT-4o the paper used as an aggregator ("GPT-4o (05/13)"), pinned so
that results stay comparable when the ``gpt-4o`` alias moves."""

LOCAL_PROPOSERS = 3
"""Proposers per layer in the embedded stack: the paper's single-proposer
setting, one model sampled with different seeds."""
LOCAL_LAYERS = 2
"""Layers of the embedded stack, counting the aggregator's (MoA-Lite's shape)."""
LOCAL_MAX_TOKENS = 512
"""The reference code's max_tokens in its demos."""
LOCAL_TEMPERATURE = 0.7
"""The reference code's temperature everywhere."""


@dataclass(frozen=True)
class PaperStack:
    """One of the paper's MoA configurations."""

    layers: int
    """Layers counting the aggregator's."""
    aggregator: str
    """The aggregator's model id."""
    aggregator_on_openai: bool
    """Whether the aggregator is an OpenAI model (else it is served with the proposers)."""
    proposers: tuple[str, ...] = PAPER_PROPOSERS
    """The proposers of every proposer layer."""


PAPER_STACKS = MappingProxyType(
    {
        "moa": PaperStack(
            layers=3, aggregator="Qwen/Qwen1.5-110B-Chat", aggregator_on_openai=False
        ),
        "moa-lite": PaperStack(
            layers=2, aggregator="Qwen/Qwen1.5-72B-Chat", aggregator_on_openai=False
        ),
        "moa-gpt4o": PaperStack(layers=3, aggregator=GPT_4O, aggregator_on_openai=True),
    }
)
"""The paper's MoA, MoA-Lite and MoA w/ GPT-4o, by preset name."""


def local_spec(
    *,
    layers: int = LOCAL_LAYERS,
    proposers: int = LOCAL_PROPOSERS,
    max_tokens: int = LOCAL_MAX_TOKENS,
    temperature: float = LOCAL_TEMPERATURE,
) -> StackSpec:
    """The embedded stack: SmolLM2 proposers, each sampling with its own seed.

    Seeds 1..n for the proposers and 0 for the aggregator make a layer's
    answers differ while the whole run stays repeatable.
    """
    return StackSpec(
        proposers=[ModelConfig(model=LOCAL_MODEL, seed=seed) for seed in range(1, proposers + 1)],
        layers=layers,
        aggregator=ModelConfig(model=LOCAL_MODEL, seed=0),
        max_tokens=max_tokens,
        temperature=temperature,
    )


def paper_spec(
    name: str, *, base_url: str | None = None, api_key_env: str | None = None
) -> StackSpec:
    """One of the paper's stacks, its open models on Together or on ``base_url``.

    Args:
        name: ``moa``, ``moa-lite`` or ``moa-gpt4o``.
        base_url: Another OpenAI-compatible server with the same model ids;
            GPT-4o stays on OpenAI's.
        api_key_env: The variable holding that server's key. With
            ``base_url`` and none, no key is sent: Together's key only ever
            goes to Together.
    """
    stack = PAPER_STACKS[name]
    own_server = base_url is not None and base_url.rstrip("/") != TOGETHER_BASE_URL
    key_env = api_key_env or (None if own_server else TOGETHER_API_KEY_ENV)

    def served(model: str) -> ModelConfig:
        return ModelConfig(
            model=f"openai:{model}", base_url=base_url or TOGETHER_BASE_URL, api_key_env=key_env
        )

    aggregator = (
        ModelConfig(model=f"openai:{stack.aggregator}", api_key_env=OPENAI_API_KEY_ENV)
        if stack.aggregator_on_openai
        else served(stack.aggregator)
    )
    return StackSpec(
        proposers=[served(model) for model in stack.proposers],
        layers=stack.layers,
        aggregator=aggregator,
    )
