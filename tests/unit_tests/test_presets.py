"""The paper's stacks as presets, ``model_from_spec`` and ``moa chat --preset``; no network."""

import pytest
from langchain_openai import ChatOpenAI

from langchain_moa import ChatMoA, cli
from langchain_moa.presets import (
    NO_KEY,
    PRESETS,
    TOGETHER_BASE_URL,
    model_from_spec,
    openai_compatible_model,
    preset,
)

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


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", TOGETHER_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)


@pytest.fixture
def no_keys(monkeypatch):
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def key_of(model: ChatOpenAI) -> str:
    assert model.openai_api_key is not None
    return model.openai_api_key.get_secret_value()


def proposer_layers(moa: ChatMoA) -> list[list]:
    if isinstance(moa.layers, int):
        return [list(moa.proposers)] * (moa.layers - 1)
    return [list(layer) for layer in moa.layers]


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
    moa = preset(name)
    stack = proposer_layers(moa)
    assert len(stack) + 1 == layers
    for layer in stack:
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
    assert moa.aggregator.model_name == aggregator
    assert moa.aggregator.temperature == 0.7


def test_open_aggregators_share_the_proposers_endpoint(keys) -> None:
    aggregator = preset("moa").aggregator
    assert aggregator.openai_api_base == TOGETHER_BASE_URL
    assert key_of(aggregator) == TOGETHER_KEY
    assert aggregator.extra_body == {"max_tokens": 2048}


def test_gpt4o_aggregator_is_on_openai_with_its_own_key(keys, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    aggregator = preset("moa-gpt4o").aggregator
    assert aggregator.openai_api_base is None  # OpenAI's own endpoint
    assert key_of(aggregator) == OPENAI_KEY
    assert aggregator.max_tokens == 2048


def test_generation_settings_reach_every_model(keys) -> None:
    moa = preset("moa-gpt4o", max_tokens=300, temperature=0.1)
    for model in proposer_layers(moa)[0]:
        assert model.extra_body == {"max_tokens": 300}
        assert model.temperature == 0.1
    assert moa.aggregator.max_tokens == 300
    assert moa.aggregator.temperature == 0.1


def test_chat_moa_fields_pass_through(keys) -> None:
    moa = preset("moa-lite", min_proposers=4, aggregation="rank", model_name="lite")
    assert (moa.min_proposers, moa.aggregation, moa.model_name) == (4, "rank", "lite")


@pytest.mark.parametrize("name", ["moa", "moa-lite", "moa-gpt4o"])
def test_missing_together_key_names_the_variable_and_preset(no_keys, monkeypatch, name) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    with pytest.raises(ValueError, match="TOGETHER_API_KEY") as caught:
        preset(name)
    message = str(caught.value)
    assert f"preset {name!r}" in message
    assert "OPENAI_API_KEY" not in message
    assert OPENAI_KEY not in message


def test_missing_openai_key_for_gpt4o(no_keys, monkeypatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", TOGETHER_KEY)
    with pytest.raises(ValueError, match=r"^preset 'moa-gpt4o' needs OPENAI_API_KEY set") as caught:
        preset("moa-gpt4o")
    assert TOGETHER_KEY not in str(caught.value)


def test_both_missing_keys_are_named_at_once(no_keys) -> None:
    with pytest.raises(ValueError, match="needs TOGETHER_API_KEY and OPENAI_API_KEY"):
        preset("moa-gpt4o")


def test_an_empty_variable_is_a_missing_key(no_keys, monkeypatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "")
    with pytest.raises(ValueError, match="TOGETHER_API_KEY"):
        preset("moa")


def test_another_server_never_gets_the_together_key(keys) -> None:
    moa = preset("moa-lite", base_url="http://127.0.0.1:8000/v1")
    models = [*proposer_layers(moa)[0], moa.aggregator]
    assert {m.openai_api_base for m in models} == {"http://127.0.0.1:8000/v1"}
    assert {key_of(m) for m in models} == {NO_KEY}


def test_another_server_needs_no_together_key(no_keys) -> None:
    moa = preset("moa", base_url="http://vllm:8000/v1", api_key="vllm-key")
    assert {key_of(m) for m in proposer_layers(moa)[0]} == {"vllm-key"}
    assert [m.model_name for m in proposer_layers(moa)[0]] == PAPER_PROPOSERS


def test_togethers_url_given_explicitly_still_uses_its_key(keys) -> None:
    moa = preset("moa-lite", base_url=TOGETHER_BASE_URL + "/")
    assert key_of(moa.aggregator) == TOGETHER_KEY


def test_gpt4o_stays_on_openai_when_the_open_models_move(keys) -> None:
    moa = preset("moa-gpt4o", base_url="http://vllm:8000/v1", api_key="vllm-key")
    assert key_of(moa.aggregator) == OPENAI_KEY
    assert moa.aggregator.openai_api_base != "http://vllm:8000/v1"


def test_unknown_preset_lists_the_names() -> None:
    with pytest.raises(ValueError, match="unknown preset 'moa-xl': choose from moa, moa-lite"):
        preset("moa-xl")


def test_local_preset_is_the_embedded_stack(monkeypatch) -> None:
    seen = {}

    def fake_local(cls, **kwargs):
        seen.update(kwargs)
        return "embedded"

    monkeypatch.setattr(ChatMoA, "local", classmethod(fake_local))
    assert preset("local", max_tokens=64, temperature=0.2, min_proposers=2) == "embedded"
    assert seen == {"max_tokens": 64, "temperature": 0.2, "min_proposers": 2}


@pytest.mark.parametrize("option", [{"base_url": "http://x/v1"}, {"api_key": "k"}])
def test_local_preset_takes_no_server(option) -> None:
    with pytest.raises(ValueError, match="preset 'local' runs on the embedded model"):
        preset("local", **option)


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
    payload = model._get_request_payload("hi")
    assert payload["extra_body"] == {"top_k": 5, "max_tokens": 10}
    assert "max_completion_tokens" not in payload
    assert "temperature" not in payload


def test_model_from_spec_accepts_the_paper_presets(keys) -> None:
    moa = model_from_spec("moa-lite", max_tokens=1024, temperature=0.5)
    assert isinstance(moa, ChatMoA)
    assert moa.aggregator.model_name == "Qwen/Qwen1.5-72B-Chat"
    assert moa.aggregator.extra_body == {"max_tokens": 1024}
    assert moa.aggregator.temperature == 0.5


def test_model_from_spec_names_every_preset_when_lost() -> None:
    with pytest.raises(ValueError, match="unknown model 'nonsense'") as caught:
        model_from_spec("nonsense")
    for name in (*PRESETS, "local-model"):
        assert repr(name) in str(caught.value)


def test_model_from_spec_still_takes_provider_strings(keys) -> None:
    model = model_from_spec("openai:gpt-4o-mini", max_tokens=5)
    assert isinstance(model, ChatOpenAI)
    assert model.max_tokens == 5


# moa chat --preset: argument handling only; a run would call the providers.


def chat_args(*argv: str):
    return cli._parser().parse_args(["chat", *argv, "question"])


def test_cli_preset_builds_the_stack(keys) -> None:
    moa = cli._model(chat_args("--preset", "moa-lite", "--max-tokens", "64"))
    assert isinstance(moa, ChatMoA)
    assert moa.layers == 2
    assert moa.aggregator.extra_body == {"max_tokens": 64}


def test_cli_preset_defaults_to_the_papers_max_tokens(keys) -> None:
    moa = cli._model(chat_args("--preset", "moa", "--min-proposers", "5"))
    assert moa.aggregator.extra_body == {"max_tokens": 2048}
    assert moa.min_proposers == 5


def test_cli_without_a_stack_keeps_the_embedded_default(monkeypatch) -> None:
    seen = {}

    def fake_local(cls, **kwargs):
        seen.update(kwargs)
        return "embedded"

    monkeypatch.setattr(ChatMoA, "local", classmethod(fake_local))
    assert cli._model(chat_args()) == "embedded"
    assert seen == {
        "layers": 2,
        "proposers": 3,
        "max_tokens": 512,
        "model_path": None,
        "min_proposers": 1,
    }


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
        (["--preset", "moa", "--aggregator", "openai:gpt-4o"], "--aggregator does not apply"),
        (["--preset", "moa", "--layers", "4"], "--layers does not apply with --preset"),
        (["--preset", "moa", "--proposers", "2"], "--proposers does not apply with --preset"),
        (["--preset", "local", "--gguf", "m.gguf"], "--gguf does not apply with --preset"),
    ],
)
def test_cli_preset_argument_errors(keys, capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["chat", *argv, "hi"])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
