"""The stack spec: the one typed description of a MoA stack.

``ChatMoA``'s fields, YAML/TOML stack files, presets and ``moa chat``'s flags
all produce a ``StackSpec``, and it is validated here and nowhere else. A
model entry is a chat model instance, a ``"provider:model"`` string, or a
``ModelConfig`` (a string with settings); ``local-model`` names the embedded
SmolLM2. Nothing here builds a model or reads a key: see ``factory``.

Every mistake is a ``StackError`` (a ``ValueError``, ``stacks.errors``) whose
lines name the key path, as a file would be read: ``layers[1][0].temprature:
unknown key (did you mean 'temperature'?)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, NoReturn, Self, get_args

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    InstanceOf,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from langchain_moa.costs import Rates
from langchain_moa.stacks.errors import StackError, describe, did_you_mean, shown
from langchain_moa.stacks.provider_settings import OPENAI_RENAMED, openai_settings, setting_names
from langchain_moa.stacks.strategy import Strategy, parse_strategy

LOCAL_MODEL = "local-model"
"""The embedded SmolLM2-135M-Instruct alone, as a model entry."""

PresetName = Literal["moa", "moa-lite", "moa-gpt4o", "local"]
"""The named stacks (``presets`` holds what each is)."""
PRESETS: tuple[str, ...] = get_args(PresetName)
LOCAL_MOA = "local"
"""The preset that is the embedded MoA stack (and what a spec naming no model means)."""

DeadlineStart = Literal["start", "quorum"]
"""What a layer's ``deadline_s`` counts from: the layer's start, or its
``min_proposers``-th answer."""

ReferenceFormat = Literal["paper", "delimited"]
"""How references are shown to the next model: the paper's numbered list, or
tagged blocks a proposer's text cannot close or forge (see ``graph.prompts``)."""

ReferenceFilter = Literal["cluster"]
"""A defence against a deceptive proposer applied to each layer's references."""

ReferenceOrder = Literal["given", "shuffle"]
"""The order references are shown in: the proposers' own, or shuffled per query."""

AgreementMethod = Literal["final_answer", "embedding"]
"""How early stop decides that a layer's answers agree (see ``graph.agreement``)."""

Fanout = Literal["every_call", "per_turn"]
"""When the proposers run in a tool loop: on every call, or once per user turn
(later steps of the turn go to the aggregator with the turn's references)."""

PAPER_LAYERS = 3
"""The paper's MoA: two proposer layers and the aggregator's."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET = re.compile(r"(api_?key|secret|password|access_key|(api|access|auth|hub)_token|^token)$")
"""Setting names that hold a credential (``openai_api_key``, ``aws_secret_access_key``...)."""


def _is_secret(key: str) -> bool:
    return bool(_SECRET.search(key.lower()))


def _fail(problem: str) -> NoReturn:
    """Raise one of our own rules' errors; the message is shown as written."""
    raise PydanticCustomError("moa", "{problem}", {"problem": problem})  # noqa: EM101 - a template


def _check_keys(data: Mapping[str, Any], known: Iterable[str]) -> None:
    """Secrets are refused and unknown keys named with a close match."""
    known = frozenset(known)
    for key in data:
        if not isinstance(key, str):
            _fail(f"keys must be strings, got {shown(key)}")
        if _is_secret(key):
            # Never echo the value: it is a key.
            msg = f"{key}: keys do not belong in a stack: use api_key_env"
            _fail(msg)
        if key not in known:
            _fail(f"{key}: unknown key{did_you_mean(key, known)}")


EnvName = Annotated[StrictStr, Field(pattern=_ENV_NAME.pattern)]
Temperature = Annotated[StrictFloat | StrictInt, Field(ge=0)]
MaxTokens = Annotated[StrictInt, Field(ge=1)]
Seconds = Annotated[StrictFloat | StrictInt, Field(gt=0)]
Retries = Annotated[StrictInt, Field(ge=0)]
Price = Annotated[StrictFloat | StrictInt, Field(ge=0, allow_inf_nan=False)]
"""US$ per million tokens."""


class ModelConfig(BaseModel):
    """A model named by a string, with its settings.

    ``temperature``, ``max_tokens``, ``timeout`` and ``max_retries`` left out
    take the stack's; set to None they are left to the provider (reasoning
    models refuse a temperature). Other keys are the provider class's own
    settings (``top_p``, ``seed``...): for OpenAI-compatible entries they are
    checked here, for other providers when the model is built.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    model: StrictStr
    """``"provider:model"`` (``init_chat_model``'s form) or ``"local-model"``."""
    base_url: StrictStr | None = None
    """An OpenAI-compatible server of the user's own (``openai:`` entries)."""
    api_key_env: EnvName | None = None
    """The environment variable that holds the key; keys are never in a spec."""
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    timeout: Seconds | None = None
    """Seconds one request may take (the provider client's timeout)."""
    max_retries: Retries | None = None
    """The provider client's own retries (with its backoff)."""
    seed: Annotated[StrictInt, Field(ge=0)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"model": data}
        if not isinstance(data, Mapping):
            _fail(f"expected a model string or table, got {shown(data)}")
        if "model" not in data:
            _fail("model: missing: 'provider:model' or 'local-model'")
        return data

    @field_validator("model")
    @classmethod
    def _model_name(cls, spec: str) -> str:
        if spec == LOCAL_MOA:
            msg = f"{LOCAL_MOA!r} is a whole stack, not a model: use {LOCAL_MODEL!r}"
            _fail(msg)
        provider, _, name = spec.partition(":")
        if spec != LOCAL_MODEL and not (provider.strip() and name.strip()):
            _fail(f"expected 'provider:model' or {LOCAL_MODEL!r}, got {spec!r}")
        return spec

    @model_validator(mode="after")
    def _settings(self) -> Self:
        local = self.model == LOCAL_MODEL
        on_openai = local or self.provider == "openai"
        for key in self.provider_settings:
            if _is_secret(key):
                msg = f"{key}: keys do not belong in a stack: use api_key_env"
                _fail(msg)
            if on_openai and key in OPENAI_RENAMED:
                _fail(f"{key}: write it as {OPENAI_RENAMED[key]!r}")
            if on_openai and key not in openai_settings():
                known = set(type(self).model_fields) | openai_settings()
                _fail(f"{key}: unknown key{did_you_mean(key, known)}")
        if local:
            for key in ("base_url", "api_key_env"):
                if key in self.model_fields_set:
                    _fail(f"{key}: does not apply to {LOCAL_MODEL!r} (the embedded server)")
        return self

    @property
    def provider(self) -> str:
        """The part before the colon (``local`` for the embedded model)."""
        return "local" if self.model == LOCAL_MODEL else self.model.partition(":")[0]

    @property
    def provider_settings(self) -> dict[str, Any]:
        """Settings beyond the declared ones, passed to the provider's class."""
        return dict(self.model_extra or {})

    def settings(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """Every setting for the provider: ``defaults`` under this entry's own.

        A setting given as None is left out, so the provider's default applies.
        """
        own = {k: getattr(self, k) for k in self.model_fields_set if k != "model"}
        merged = {**defaults, **own, **self.provider_settings}
        return {k: v for k, v in merged.items() if v is not None}


def _entry_kind(value: Any) -> str:
    return "instance" if isinstance(value, BaseChatModel) else "config"


ModelEntry = Annotated[
    Annotated[InstanceOf[BaseChatModel], Tag("instance")] | Annotated[ModelConfig, Tag("config")],
    Discriminator(_entry_kind),
]
"""A chat model, a ``"provider:model"`` string or a ``ModelConfig`` (or its table)."""


def _require_list(value: Any) -> Any:
    # A chat model is iterable (a pydantic model yields its fields): without
    # this check one given where a list belongs reads as a list of settings.
    if isinstance(value, list | tuple):
        return value
    scalar = value is None or isinstance(value, str | int | float | Mapping)
    got = shown(value) if scalar else f"a {type(value).__name__}"
    msg = f"expected a list, got {got}"
    _fail(msg)


ModelList = Annotated[list[ModelEntry], BeforeValidator(_require_list)]
"""The models of one layer: a list (or tuple), never a single entry."""

GENERATION_SETTINGS = {
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "timeout_s": "timeout",
    "max_retries": "max_retries",
}
"""Stack-wide defaults for every model the stack builds from a string or
config: the spec's name, and the model setting it becomes."""

MinProposers = Annotated[StrictInt, Field(ge=1)]


class _Table(BaseModel):
    """A small table of settings in a stack: unknown keys named, secrets refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _holds: ClassVar[str] = "settings"
    """What the table holds, for the error when it is not a table."""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            _fail(f"expected a table of {cls._holds}, got {shown(data)}")
        _check_keys(data, cls.model_fields)
        return data


class LayerPolicy(_Table):
    """One proposer layer's own time and failure policy; what it leaves out is the stack's."""

    _holds = "policy settings"

    timeout_s: Seconds | None = None
    """Seconds one call of this layer may take."""
    deadline_s: Seconds | None = None
    """Seconds after which this layer goes on without its late calls."""
    deadline_after: DeadlineStart | None = None
    """What ``deadline_s`` counts from."""
    min_proposers: MinProposers | None = None
    """How many of this layer's proposers must answer."""


class ProviderLimit(_Table):
    """How much one provider (or server) may be sent at once, by every stack in the process."""

    _holds = "limits"

    max_concurrency: Annotated[StrictInt, Field(ge=1)] | None = None
    """Calls in flight at once; the others wait their turn, which counts in their
    ``timeout_s`` and their layer's deadline."""
    requests_per_second: (
        Annotated[StrictFloat | StrictInt, Field(gt=0, allow_inf_nan=False)] | None
    ) = None
    """Calls started per second, smoothed by a token bucket (``InMemoryRateLimiter``).
    A client's own retries of a call (``max_retries``) go out within its turn."""

    @model_validator(mode="after")
    def _limits_something(self) -> Self:
        if self.max_concurrency is None and self.requests_per_second is None:
            _fail("give max_concurrency, requests_per_second or both")
        return self


class EarlyStop(_Table):
    """When a stack may end before its last proposer layer: the layer's answers agree."""

    _holds = "early-stop settings"

    method: AgreementMethod = "final_answer"
    """``"final_answer"``: the answers' extracted final answers are equal (short-answer
    tasks: the last number, ``#### N``, ``\\boxed{N}``); ``"embedding"``: every pair's
    cosine similarity reaches ``threshold``."""
    threshold: Annotated[StrictFloat | StrictInt, Field(ge=-1, le=1)] | None = None
    """With ``"embedding"``: the least cosine similarity that counts as agreeing."""
    min_agreeing: Annotated[StrictFloat | StrictInt, Field(gt=0, le=1)] | None = None
    """With ``"final_answer"``: the share of answers that must give the most common
    final answer (1, the default, is all of them)."""
    embeddings: InstanceOf[Embeddings] | None = None
    """With ``"embedding"``, in Python: any LangChain ``Embeddings``; None is the offline
    default (WordLlama, the ``agreement`` extra)."""

    @model_validator(mode="after")
    def _options_of_method(self) -> Self:
        if self.method == "final_answer":
            for key in ("threshold", "embeddings"):
                if getattr(self, key) is not None:
                    _fail(f"{key}: only with method 'embedding'")
        elif self.min_agreeing is not None:
            _fail("min_agreeing: only with method 'final_answer'")
        return self


@dataclass(frozen=True)
class Policy:
    """The time and failure policy one layer runs under, every setting resolved."""

    min_proposers: int
    """How many calls must answer for the layer to go on."""
    timeout_s: float | None
    """Seconds one call may take (wall clock), or None for no limit of ours."""
    deadline_s: float | None
    """Seconds after ``deadline_after`` when late calls are cancelled."""
    deadline_after: DeadlineStart
    """``"start"``: from the layer's start; ``"quorum"``: from its ``min_proposers``-th answer."""


class StackSpec(BaseModel):
    """What a MoA stack is: its layers, models, aggregation and policies.

    Give ``proposers`` (every proposer layer's models, the paper's set-up)
    with ``layers`` as a count, or ``proposer_layers`` layer by layer, and an
    ``aggregator``; or a ``preset``; or nothing at all, which is the embedded
    stack (preset ``local``). ``ChatMoA`` has exactly these fields.
    """

    # Docstrings become the fields' descriptions: the command line's help is made of them.
    model_config = ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, use_attribute_docstrings=True
    )

    preset: PresetName | None = None
    """A named stack: the paper's ``moa``, ``moa-lite``, ``moa-gpt4o``, or ``local``."""

    proposers: ModelList | None = None
    """The proposers of every proposer layer (the paper's set-up); repeat a
    model for the single-proposer setting."""

    layers: Annotated[StrictInt, Field(ge=2)] | None = None
    """With ``proposers``: how many layers, counting the aggregator's (2 is
    MoA-Lite's shape; 3, the default, the paper's MoA)."""

    proposer_layers: Annotated[list[ModelList], BeforeValidator(_require_list)] | None = None
    """Each proposer layer's models, first layer first (instead of ``proposers``)."""

    aggregator: ModelEntry | None = None
    """The model that writes the final answer."""

    prompt: (
        Annotated[StrictStr, Field(min_length=1)] | InstanceOf[Runnable] | Callable[..., Any] | None
    ) = None
    """Text put before the numbered references (None is the paper's
    aggregate-and-synthesize prompt, ``RANK_PROMPT`` for the ranker), or in
    Python a callable or Runnable that returns the messages to send (see
    ``langchain_moa.graph.PromptInput``)."""

    strategy: Annotated[Strategy, BeforeValidator(parse_strategy)] = Field(
        default_factory=lambda: parse_strategy("synthesize"),
        validation_alias=AliasChoices("strategy", "aggregation"),
    )
    """How the proposers are chosen and their answers become one, by name (default
    synthesize, the paper's). A name of ``stacks.STRATEGIES`` (``"rank"`` is the
    paper's LLM-ranker baseline; see ``stacks.strategy``), its table of options
    (``{"name": "self-moa-seq", "window": 3}``) or a ``Strategy``. ``aggregation``
    is accepted too."""

    reference_order: ReferenceOrder = "given"
    """``"shuffle"``: each layer's references are shown in a random order, drawn
    per query (position bias); each call's record lists the order it read
    (``references``) and the answer's metadata the seed that replays it."""

    early_stop: EarlyStop | None = None
    """End the stack before its last proposer layer once a layer's answers agree
    (``{"method": "final_answer"}`` or ``{"method": "embedding", "threshold":
    0.9}``); the answer's metadata says which layer stopped and what it saved."""

    min_proposers: MinProposers = 1
    """How many proposers of each layer must succeed for the run to go on.
    With ``deadline_s``, the layer waits for this many answers at least."""

    timeout_s: Seconds | None = Field(
        default=None, validation_alias=AliasChoices("timeout_s", "timeout")
    )
    """Seconds one model call may take, retries included (``timeout`` is
    accepted too, LangChain's name). Enforced on every call, model instances'
    too: a late call is cancelled and recorded with reason ``timeout``. Models
    built from a string or config also get it as their client's request timeout."""

    deadline_s: Seconds | None = None
    """A layer goes on once ``min_proposers`` have answered and this many
    seconds have passed since the layer began (``deadline_after``); its late
    calls are cancelled and recorded with reason ``timeout``. None waits for
    every call (each within ``timeout_s``)."""

    deadline_after: DeadlineStart = "start"
    """What ``deadline_s`` counts from: ``"start"`` (the layer's start) or
    ``"quorum"`` (its ``min_proposers``-th answer)."""

    layer_policies: Annotated[list[LayerPolicy], BeforeValidator(_require_list)] | None = None
    """One policy per proposer layer, first layer first (``timeout_s``,
    ``deadline_s``, ``deadline_after``, ``min_proposers``); what a layer's
    policy leaves out is the stack's."""

    fallbacks: ModelList | None = None
    """Aggregators to try in order when the aggregator fails; an answer
    written by one is marked ``degraded``."""

    best_proposer_fallback: StrictBool = False
    """Last resort when every aggregator failed: answer with the last layer's
    reference that agrees most with the others (marked ``degraded``). Off by
    default: the answer is then no synthesis at all."""

    max_input_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    """Every model's context budget for its input; None takes each model's
    ``profile["max_input_tokens"]``. References that would overflow it are
    shortened to fit, each in proportion, keeping its start."""

    reference_format: ReferenceFormat = "paper"
    """``"paper"``: the reference code's numbered list (the default, for
    comparable results); ``"delimited"``: each reference in tags that carry a
    per-call nonce, so a proposer's text cannot close its block or pose as
    the system prompt."""

    reference_filter: ReferenceFilter | None = None
    """``"cluster"``: drop the references that disagree with the majority
    before each layer reads them (Cluster & Filter, arXiv 2503.05856), a
    defence against a deceptive proposer."""

    prices: dict[StrictStr, tuple[Price, Price]] | None = None
    """US$ per million input and output tokens by model name, over the defaults
    (``costs.PRICES``): what each call's ``cost_usd`` is computed with. A model
    with no price costs ``None``, never 0."""

    parameters: (
        dict[StrictStr, Annotated[StrictFloat | StrictInt, Field(gt=0, allow_inf_nan=False)]] | None
    ) = None
    """Active parameters in billions by model name, over the defaults
    (``costs.PARAMETERS``): what each call's ``tflops`` is computed with."""

    provider_limits: dict[StrictStr, ProviderLimit] | None = None
    """Limits per provider, keyed by a model's base URL (``http://host:port/v1``)
    or provider name (``openai``, ``together``...): ``max_concurrency`` and
    ``requests_per_second``. They hold across every query and every stack of
    the process that names the same limits, so a batch never sends more."""

    fanout: Fanout = "every_call"
    """In a tool loop: ``"every_call"`` runs the proposers on every call;
    ``"per_turn"`` runs them once per user turn, and the turn's later steps
    (after tool results) go to the aggregator alone with the references the
    turn's first answer carries in its ``response_metadata``."""

    model_name: StrictStr | None = Field(default=None, min_length=1)
    """Reported as ``response_metadata["model_name"]``; derived if not given."""

    base_url: StrictStr | None = None
    """With a paper preset: another OpenAI-compatible server that serves its
    open models under Together's ids (vLLM, a gateway)."""

    api_key_env: EnvName | None = None
    """With a paper preset: the variable holding that server's key."""

    temperature: Temperature | None = None
    """Sampling temperature of every model built from a string or config
    (instances keep theirs); None leaves each model's own."""

    max_tokens: MaxTokens | None = None
    """Longest answer of each call, for every model built from a string or config."""

    max_retries: Retries | None = None
    """The provider clients' own retries, for every model built from a string or config."""

    stop: list[StrictStr] | None = None
    """Stop sequences of the final answer (the aggregator's call)."""

    def __init__(self, **data: Any) -> None:
        """Check the stack.

        Raises:
            StackError: naming each wrong key path and what is wrong with it.
        """
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise describe(error) from None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        """Check a table of settings as the constructor does.

        Raises:
            StackError: naming each wrong key path and what is wrong with it.
        """
        if isinstance(obj, Mapping):
            for key in obj:
                if not isinstance(key, str):
                    msg = f"keys must be strings, got {shown(key)}"
                    raise StackError(msg)
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as error:
            raise describe(error) from None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            _fail(f"expected a table of settings, got {shown(data)}")
        if "layers" in data and isinstance(data["layers"], list):
            msg = (
                "layers: is the number of layers (with proposers); "
                "give per-layer proposers as proposer_layers"
            )
            _fail(msg)
        _check_keys(data, setting_names(cls))
        return data

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_kind(cls, prompt: Any) -> Any:
        # One message, not one per branch of the union.
        if isinstance(prompt, str) and not prompt:
            msg = "must not be empty"
            _fail(msg)
        if prompt is None or isinstance(prompt, str | Runnable) or callable(prompt):
            return prompt
        msg = f"expected a string (or a callable or Runnable), got {shown(prompt)}"
        _fail(msg)

    @model_validator(mode="after")
    def _stack_rules(self) -> Self:
        given = self.model_fields_set
        if self.preset is not None:
            self._preset_rules(given)
            return self
        for key in ("base_url", "api_key_env"):
            if key in given:
                _fail(f"{key}: only with preset: set it on each model instead")
        if self.proposers is not None and self.proposer_layers is not None:
            _fail("proposers: give proposers (with layers) or proposer_layers, not both")
        if self.proposer_layers is not None and self.layers is not None:
            _fail("layers: proposer_layers fixes the number of layers: leave layers out")
        if self.proposers is None and self.proposer_layers is None:
            if self.aggregator is not None:
                _fail("aggregator: given without proposers: give proposers or proposer_layers")
            return self  # the embedded stack
        self._layer_rules()
        return self

    def _layer_rules(self) -> None:
        if self.proposers is not None and not self.proposers:
            _fail("proposers: empty: give at least one model")
        if self.proposer_layers is not None:
            if not self.proposer_layers:
                _fail("proposer_layers: empty: give at least one layer of proposers")
            for number, layer in enumerate(self.proposer_layers):
                if not layer:
                    _fail(f"proposer_layers[{number}]: empty: every layer needs a proposer")
        if self.aggregator is None:
            _fail("aggregator: missing: name the model that writes the final answer")
        sizes = self.strategy.layer_sizes([len(layer) for layer in self.layer_entries()])
        if self.min_proposers > min(sizes):
            _fail(
                f"min_proposers: {self.min_proposers} is more than the smallest layer's "
                f"{min(sizes)} proposer(s)"
            )
        self._policy_rules(sizes)

    def _policy_rules(self, sizes: list[int]) -> None:
        """``layer_policies`` has one policy per proposer layer, each within its layer."""
        if self.layer_policies is None:
            return
        if len(self.layer_policies) != len(sizes):
            _fail(
                f"layer_policies: {len(self.layer_policies)} given for {len(sizes)} proposer "
                "layer(s): give one per proposer layer ({} for a layer that takes the stack's)"
            )
        for number, (policy, size) in enumerate(zip(self.layer_policies, sizes, strict=True)):
            if policy.min_proposers is not None and policy.min_proposers > size:
                _fail(
                    f"layer_policies[{number}].min_proposers: {policy.min_proposers} is more "
                    f"than the layer's {size} proposer(s)"
                )

    def _preset_rules(self, given: set[str]) -> None:
        fixed = ("proposers", "proposer_layers", "aggregator")
        # The embedded stack's depth is a choice; the paper's stacks are as published.
        for key in fixed if self.preset == LOCAL_MOA else (*fixed, "layers"):
            if key in given:
                _fail(f"{key}: not allowed with preset: a preset fixes its models")
        if self.preset == LOCAL_MOA:
            for key in ("base_url", "api_key_env"):
                if key in given:
                    _fail(f"{key}: does not apply to preset {LOCAL_MOA!r}")

    @property
    def is_embedded(self) -> bool:
        """Whether the spec is the embedded stack (preset ``local``, or no models)."""
        return self.preset == LOCAL_MOA or (
            self.preset is None and self.proposers is None and self.proposer_layers is None
        )

    def layer_entries(self) -> list[list[Any]]:
        """The proposer layers as given (empty for a preset or the embedded stack)."""
        if self.proposer_layers is not None:
            return [list(layer) for layer in self.proposer_layers]
        if self.proposers is not None:
            return [list(self.proposers)] * ((self.layers or PAPER_LAYERS) - 1)
        return []

    def generation_defaults(self) -> dict[str, Any]:
        """The stack-wide settings its string and config entries take, as model settings."""
        return {
            setting: getattr(self, name)
            for name, setting in GENERATION_SETTINGS.items()
            if getattr(self, name) is not None
        }

    def policy(self, layer: int) -> Policy:
        """The policy proposer layer ``layer`` (1-based) runs under."""
        own = LayerPolicy()
        if self.layer_policies is not None and layer <= len(self.layer_policies):
            own = self.layer_policies[layer - 1]

        def pick(name: str) -> Any:
            value = getattr(own, name)
            return getattr(self, name) if value is None else value

        return Policy(
            min_proposers=pick("min_proposers"),
            timeout_s=pick("timeout_s"),
            deadline_s=pick("deadline_s"),
            deadline_after=pick("deadline_after"),
        )

    def aggregator_policy(self) -> Policy:
        """The aggregator's (and its fallbacks') policy: the stack's ``timeout_s``."""
        return Policy(
            min_proposers=1, timeout_s=self.timeout_s, deadline_s=None, deadline_after="start"
        )

    def rates(self) -> Rates:
        """The price and parameter tables: the defaults with this stack's entries over them."""
        return Rates.extended(self.prices, self.parameters)

    def fields(self) -> dict[str, Any]:
        """The fields that were given, as keyword arguments (``ChatMoA(**spec.fields())``)."""
        return {
            name: getattr(self, name)
            for name in self.model_fields_set & set(StackSpec.model_fields)
        }
