"""The paper's stacks as presets, ``model_from_spec`` and ``moa chat --preset``; no network."""

import subprocess

import pytest
from langchain_openai import ChatOpenAI

from langchain_moa import ChatMoA, StackError, cli
from langchain_moa.cli import chat
from langchain_moa.local import shared_server
from langchain_moa.model_names import model_from_spec
from langchain_moa.openai_compatible import NO_KEY, openai_compatible_model
from langchain_moa.stacks import PRESETS, ModelConfig, StackSpec
from langchain_moa.stacks.factory import expand
from langchain_moa.stacks.presets import TOGETHER_BASE_URL, local_spec, paper_spec

TOGETHER_KEY = "together-secret-123"
OPENAI_KEY = "openai-secret-456"

# The reference code's reference_models (togethercomputer/MoA, run_generation.sh), written
# out here rather than read from the module, so that a changed id fails a test.
PAPER_PROPOSERS = [
    "microsoft/WizardLM-2-8x22B",
    "Qwen/Qwen1.5-110B-Chat",
    "Qwen/Qwen1.5-72B-Chat",
    "meta-llama/Llama-3-70b-chat-hf",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "databricks/dbrx-instruct",
]


@pytest.fixture(autouse=True)
def no_socket_probe(monkeypatch):
    # ChatOpenAI opens (never connects) a socket to probe TCP keepalive options when
    # it is built; pytest-socket blocks that and warns. Without keepalive: no probe.
    monkeypatch.setenv("LANGCHAIN_OPENAI_TCP_KEEPALIVE", "0")
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "VLLM_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", TOGETHER_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)


@pytest.fixture
def no_keys(monkeypatch):
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def no_process(monkeypatch):
    """Building a stack must start nothing: a started process fails the test."""

    def no_popen(*args, **kwargs):
        raise AssertionError("a process was started")

    monkeypatch.setattr(subprocess, "Popen", no_popen)


def key_of(model: ChatOpenAI) -> str:
    assert model.openai_api_key is not None
    return model.openai_api_key.get_secret_value()


def test_presets_are_the_papers_stacks_and_the_embedded_one() -> None:
    assert set(PRESETS) == {"moa", "moa-lite", "moa-gpt4o", "local"}


@pytest.mark.parametrize(
    ("name", "layers", "aggregator"),
    [
        ("moa", 3, "Qwen/Qwen1.5-110B-Chat"),
        ("moa-lite", 2, "Qwen/Qwen1.5-72B-Chat"),
        ("moa-gpt4o", 3, "gpt-4o-2024-05-13"),
    ],
)
def test_paper_stack_structure(keys, name, layers, aggregator) -> None:
    moa = ChatMoA(preset=name)
    assert moa.preset == name
    assert len(moa.stack.layers) + 1 == layers
    for layer in moa.stack.layers:
        assert [m.model_name for m in layer] == PAPER_PROPOSERS
        for model in layer:
            assert isinstance(model, ChatOpenAI)
            assert model.openai_api_base == TOGETHER_BASE_URL
            assert key_of(model) == TOGETHER_KEY
            assert model.temperature == 0.7
            # Sent as the request's max_tokens, which every OpenAI-compatible server reads.
            assert model.extra_body == {"max_tokens": 2048}
            assert model.max_tokens is None
            assert model.stream_usage is True
    assert moa.stack.aggregator.model_name == aggregator
    assert moa.stack.aggregator.temperature == 0.7
    assert moa.model_name == f"moa-{layers}l:{aggregator}"


def test_open_aggregators_share_the_proposers_endpoint(keys) -> None:
    aggregator = ChatMoA(preset="moa").stack.aggregator
    assert aggregator.openai_api_base == TOGETHER_BASE_URL
    assert key_of(aggregator) == TOGETHER_KEY
    assert aggregator.extra_body == {"max_tokens": 2048}


def test_gpt4o_aggregator_is_on_openai_with_its_own_key(keys) -> None:
    aggregator = ChatMoA(preset="moa-gpt4o").stack.aggregator
    assert aggregator.openai_api_base is None  # OpenAI's own endpoint
    assert key_of(aggregator) == OPENAI_KEY
    assert aggregator.max_tokens == 2048
    assert aggregator.stream_usage is True


def test_generation_settings_reach_every_model(keys) -> None:
    moa = ChatMoA(preset="moa-gpt4o", max_tokens=300, temperature=0.1, timeout=30, max_retries=4)
    for model in moa.stack.layers[0]:
        assert model.extra_body == {"max_tokens": 300}
        assert model.temperature == 0.1
        assert (model.request_timeout, model.max_retries) == (30, 4)
    assert moa.stack.aggregator.max_tokens == 300
    assert moa.stack.aggregator.temperature == 0.1
    assert (moa.stack.aggregator.request_timeout, moa.stack.aggregator.max_retries) == (30, 4)


def test_chat_moa_fields_pass_through(keys) -> None:
    moa = ChatMoA(
        preset="moa-lite", min_proposers=4, aggregation="rank", model_name="lite", prompt="Pick."
    )
    assert (moa.min_proposers, moa.strategy.name, moa.model_name, moa.prompt) == (
        4,
        "rank",
        "lite",
        "Pick.",
    )
    assert (moa.stack.spec.min_proposers, moa.stack.spec.strategy.name) == (4, "rank")


@pytest.mark.parametrize("name", ["moa", "moa-lite", "moa-gpt4o"])
def test_missing_together_key_names_the_variable_and_preset(no_keys, monkeypatch, name) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    with pytest.raises(StackError, match="TOGETHER_API_KEY") as caught:
        ChatMoA(preset=name)
    message = str(caught.value)
    assert f"preset {name!r}" in message
    assert "OPENAI_API_KEY" not in message
    assert OPENAI_KEY not in message


def test_missing_openai_key_for_gpt4o(no_keys, monkeypatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", TOGETHER_KEY)
    with pytest.raises(StackError, match=r"^preset 'moa-gpt4o' needs OPENAI_API_KEY set") as caught:
        ChatMoA(preset="moa-gpt4o")
    assert TOGETHER_KEY not in str(caught.value)


def test_both_missing_keys_are_named_at_once(no_keys) -> None:
    with pytest.raises(StackError, match="needs TOGETHER_API_KEY and OPENAI_API_KEY"):
        ChatMoA(preset="moa-gpt4o")


def test_an_empty_variable_is_a_missing_key(no_keys, monkeypatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "")
    with pytest.raises(StackError, match="TOGETHER_API_KEY"):
        ChatMoA(preset="moa")


def test_another_server_never_gets_the_together_key(keys) -> None:
    moa = ChatMoA(preset="moa-lite", base_url="http://127.0.0.1:8000/v1")
    models = [*moa.stack.layers[0], moa.stack.aggregator]
    assert {m.openai_api_base for m in models} == {"http://127.0.0.1:8000/v1"}
    assert {key_of(m) for m in models} == {NO_KEY}


def test_another_server_needs_no_together_key(no_keys, monkeypatch) -> None:
    monkeypatch.setenv("VLLM_KEY", "vllm-key")
    moa = ChatMoA(preset="moa", base_url="http://vllm:8000/v1", api_key_env="VLLM_KEY")
    assert {key_of(m) for m in moa.stack.layers[0]} == {"vllm-key"}
    assert [m.model_name for m in moa.stack.layers[0]] == PAPER_PROPOSERS


def test_another_servers_key_variable_must_be_set(no_keys) -> None:
    with pytest.raises(StackError, match=r"^preset 'moa' needs VLLM_KEY set in the environment"):
        ChatMoA(preset="moa", base_url="http://vllm:8000/v1", api_key_env="VLLM_KEY")


def test_togethers_url_given_explicitly_still_uses_its_key(keys) -> None:
    moa = ChatMoA(preset="moa-lite", base_url=TOGETHER_BASE_URL + "/")
    assert key_of(moa.stack.aggregator) == TOGETHER_KEY


def test_gpt4o_stays_on_openai_when_the_open_models_move(keys, monkeypatch) -> None:
    monkeypatch.setenv("VLLM_KEY", "vllm-key")
    moa = ChatMoA(preset="moa-gpt4o", base_url="http://vllm:8000/v1", api_key_env="VLLM_KEY")
    assert key_of(moa.stack.aggregator) == OPENAI_KEY
    assert moa.stack.aggregator.openai_api_base != "http://vllm:8000/v1"


def test_keys_are_taken_only_from_the_environment(keys) -> None:
    with pytest.raises(StackError, match=r"^api_key: keys do not belong in a stack") as caught:
        ChatMoA(preset="moa", api_key="sk-live-987")
    assert "sk-live-987" not in str(caught.value)
    with pytest.raises(StackError, match=r"^api_key_env: expected the name") as caught:
        ChatMoA(preset="moa", api_key_env="sk-live-987")
    assert "sk-live-987" not in str(caught.value)


def test_unknown_preset_lists_the_names() -> None:
    with pytest.raises(
        StackError,
        match=r"^preset: expected one of 'moa', 'moa-lite', 'moa-gpt4o' or 'local', got 'moa-xl'",
    ):
        ChatMoA(preset="moa-xl")


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"proposers": ["openai:a"]}, "proposers"),
        ({"proposer_layers": [["openai:a"]]}, "proposer_layers"),
        ({"aggregator": "openai:a"}, "aggregator"),
        ({"layers": 2}, "layers"),
    ],
)
def test_a_preset_fixes_its_models(keys, fields, key) -> None:
    with pytest.raises(StackError, match=f"^{key}: not allowed with preset"):
        ChatMoA(preset="moa", **fields)


def test_local_preset_is_the_embedded_stack(no_process) -> None:
    moa = ChatMoA(preset="local", max_tokens=64, temperature=0.2, min_proposers=2)
    assert moa.min_proposers == 2
    ((one, two, three),) = moa.stack.layers
    aggregator = moa.stack.aggregator
    for model in (one, two, three, aggregator):
        assert model.openai_api_base == shared_server().base_url
        assert (model.temperature, model.extra_body) == (0.2, {"max_tokens": 64})
    assert [m.seed for m in (one, two, three, aggregator)] == [1, 2, 3, 0]
    assert moa.model_name == "moa-2l:smollm2-135m-instruct"
    assert not shared_server().running


@pytest.mark.parametrize("option", [{"base_url": "http://x/v1"}, {"api_key_env": "K"}])
def test_local_preset_takes_no_server(option) -> None:
    key = next(iter(option))
    with pytest.raises(StackError, match=f"^{key}: does not apply to preset 'local'"):
        ChatMoA(preset="local", **option)


@pytest.mark.parametrize("option", [{"base_url": "http://x/v1"}, {"api_key_env": "K"}])
def test_base_url_and_api_key_env_only_with_a_preset(option) -> None:
    key = next(iter(option))
    with pytest.raises(StackError, match=f"^{key}: only with preset"):
        ChatMoA(proposers=["openai:a"], aggregator="openai:b", **option)


# Presets are data: specs naming models and key variables, built by the factory.


def test_paper_specs_name_their_models_and_key_variables(no_keys) -> None:
    spec = paper_spec("moa-gpt4o")  # no key is read: the environment has none
    assert isinstance(spec, StackSpec)
    assert spec.layers == 3
    assert spec.proposers == [
        ModelConfig(
            model=f"openai:{name}", base_url=TOGETHER_BASE_URL, api_key_env="TOGETHER_API_KEY"
        )
        for name in PAPER_PROPOSERS
    ]
    assert spec.aggregator == ModelConfig(
        model="openai:gpt-4o-2024-05-13", api_key_env="OPENAI_API_KEY"
    )
    lite = paper_spec("moa-lite")
    assert lite.layers == 2
    assert lite.aggregator.model == "openai:Qwen/Qwen1.5-72B-Chat"


def test_paper_spec_on_another_server_sends_no_together_key() -> None:
    spec = paper_spec("moa", base_url="http://vllm:8000/v1")
    for entry in [*spec.proposers, spec.aggregator]:
        assert entry.base_url == "http://vllm:8000/v1"
        assert entry.api_key_env is None
    keyed = paper_spec("moa", base_url="http://vllm:8000/v1", api_key_env="VLLM_KEY")
    assert {e.api_key_env for e in [*keyed.proposers, keyed.aggregator]} == {"VLLM_KEY"}


def test_local_spec_is_one_model_with_a_seed_each() -> None:
    spec = local_spec(layers=3, proposers=2, max_tokens=8, temperature=0.1)
    assert spec.layers == 3
    assert spec.proposers == [
        ModelConfig(model="local-model", seed=1),
        ModelConfig(model="local-model", seed=2),
    ]
    assert spec.aggregator == ModelConfig(model="local-model", seed=0)
    assert (spec.max_tokens, spec.temperature) == (8, 0.1)
    default = local_spec()
    assert (default.layers, len(default.proposers), default.max_tokens) == (2, 3, 512)


def test_expand_writes_a_preset_out_under_the_specs_own_settings(keys) -> None:
    spec = expand(StackSpec(preset="moa-lite", temperature=0.3, prompt="Merge.", stop=["END"]))
    assert spec.preset is None
    assert spec.layers == 2
    assert spec.aggregator.model == "openai:Qwen/Qwen1.5-72B-Chat"
    # The paper's max_tokens stays the default; the spec's temperature overrides 0.7.
    assert (spec.temperature, spec.max_tokens) == (0.3, 2048)
    assert (spec.prompt, spec.stop) == ("Merge.", ["END"])
    embedded = expand(StackSpec(layers=3, max_tokens=16))
    assert embedded.layers == 3
    assert (embedded.temperature, embedded.max_tokens) == (0.7, 16)
    own = StackSpec(proposers=["openai:a"], aggregator="openai:b")
    assert expand(own) is own


def test_openai_compatible_model_sends_max_tokens_in_the_body() -> None:
    model = openai_compatible_model(
        "m",
        base_url="http://h/v1",
        api_key="k",
        max_tokens=10,
        temperature=None,
        seed=3,
        extra_body={"top_k": 5},
    )
    assert model.extra_body == {"top_k": 5, "max_tokens": 10}
    assert model.temperature is None
    assert model.seed == 3
    assert model.stream_usage is True
    payload = model._get_request_payload("hi")
    assert payload["extra_body"] == {"top_k": 5, "max_tokens": 10}
    assert "max_completion_tokens" not in payload
    assert "temperature" not in payload


def test_model_from_spec_accepts_the_paper_presets(keys) -> None:
    moa = model_from_spec("moa-lite", max_tokens=1024, temperature=0.5)
    assert isinstance(moa, ChatMoA)
    assert moa.stack.aggregator.model_name == "Qwen/Qwen1.5-72B-Chat"
    assert moa.stack.aggregator.extra_body == {"max_tokens": 1024}
    assert moa.stack.aggregator.temperature == 0.5


def test_model_from_spec_names_every_preset_when_lost() -> None:
    with pytest.raises(StackError, match="unknown model 'nonsense'") as caught:
        model_from_spec("nonsense")
    for name in (*PRESETS, "local-model"):
        assert repr(name) in str(caught.value)


def test_model_from_spec_still_takes_provider_strings(keys) -> None:
    model = model_from_spec("openai:gpt-4o-mini", max_tokens=5)
    assert isinstance(model, ChatOpenAI)
    assert model.max_tokens == 5
    assert key_of(model) == OPENAI_KEY


def test_model_from_spec_local_model_is_the_embedded_server(no_process) -> None:
    model = model_from_spec("local-model", max_tokens=7, temperature=0.0)
    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_base == shared_server().base_url
    assert (model.seed, model.temperature, model.extra_body) == (0, 0.0, {"max_tokens": 7})
    assert not shared_server().running


# moa chat --preset: argument handling only; a run would call the providers.


def chat_args(*argv: str):
    return cli._parser().parse_args(["chat", *argv, "question"])


def test_cli_preset_builds_the_stack(keys) -> None:
    moa = chat._model(chat_args("--preset", "moa-lite", "--max-tokens", "64"))
    assert isinstance(moa, ChatMoA)
    assert len(moa.stack.layers) + 1 == 2
    assert moa.stack.aggregator.extra_body == {"max_tokens": 64}


def test_cli_preset_defaults_to_the_papers_max_tokens(keys) -> None:
    moa = chat._model(chat_args("--preset", "moa", "--min-proposers", "5"))
    assert moa.stack.aggregator.extra_body == {"max_tokens": 2048}
    assert moa.min_proposers == 5


def test_cli_models_build_the_stack(keys) -> None:
    moa = chat._model(
        chat_args(
            "--model", "openai:a", "--model", "openai:b", "--layers", "2", "--max-tokens", "9"
        )
    )
    ((a, b),) = moa.stack.layers
    assert [a.model_name, b.model_name, moa.stack.aggregator.model_name] == ["a", "b", "a"]
    assert {m.max_tokens for m in (a, b, moa.stack.aggregator)} == {9}
    agg = chat._model(chat_args("--model", "openai:a", "--aggregator", "openai:c"))
    assert len(agg.stack.layers) + 1 == 3
    assert agg.stack.aggregator.model_name == "c"


def test_cli_without_a_stack_keeps_the_embedded_default(monkeypatch) -> None:
    seen = {}

    def fake_local(cls, **kwargs):
        seen.update(kwargs)
        return "embedded"

    monkeypatch.setattr(ChatMoA, "local", classmethod(fake_local))
    assert chat._model(chat_args()) == "embedded"
    # min_proposers unset: ChatMoA's own default (1) applies.
    assert seen == {"layers": 2, "proposers": 3, "max_tokens": 512, "model_path": None}
    chat._model(chat_args("--min-proposers", "2"))
    assert seen["min_proposers"] == 2


def test_cli_embedded_layers_are_checked_not_replaced() -> None:
    with pytest.raises(ValueError, match="layers: must be at least 2, got 0"):
        chat._model(chat_args("--layers", "0"))


def test_cli_missing_key_is_an_error_naming_it(no_keys, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["chat", "--preset", "moa", "hi"])
    assert caught.value.code == 2
    assert "preset 'moa' needs TOGETHER_API_KEY" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "moa", "--model", "openai:gpt-4o"], "not allowed with argument"),
        (["--preset", "moa", "--config", "x.yaml"], "not allowed with argument"),
        (["--preset", "moa-xl"], "invalid choice: 'moa-xl'"),
        # The spec's own check, not a second copy of it.
        (["--preset", "moa", "--aggregator", "openai:gpt-4o"], "aggregator: not allowed"),
        (["--preset", "moa", "--layers", "4"], "layers: not allowed with preset"),
        (["--preset", "moa", "--proposers", "2"], "--proposers does not apply with --preset"),
        (["--preset", "local", "--gguf", "m.gguf"], "--gguf does not apply with --preset"),
        (["--aggregator", "openai:gpt-4o"], "--aggregator needs --model proposers"),
        (["--model", "openai:a", "--proposers", "2"], "--proposers does not apply with --model"),
        (["--model", "openai:a", "--gguf", "m.gguf"], "--gguf does not apply with --model"),
        (["--model", "openai:a", "--layers", "1"], "layers: must be at least 2, got 1"),
        (["--model", "openai:a", "--min-proposers", "0"], "min_proposers: must be at least 1"),
    ],
)
def test_cli_preset_argument_errors(keys, capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["chat", *argv, "hi"])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
