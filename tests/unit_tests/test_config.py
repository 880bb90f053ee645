"""Stacks from YAML and TOML files, and ``moa chat --config``; no network, no llama.cpp server."""

import re
import subprocess
import textwrap

import pytest
from langchain_openai import ChatOpenAI

from langchain_moa import ChatMoA, StackError, cli
from langchain_moa.cli import chat
from langchain_moa.local import shared_server
from langchain_moa.openai_compatible import NO_KEY
from langchain_moa.stacks import ModelConfig, StackSpec, factory, load_config, load_stack
from langchain_moa.stacks.presets import TOGETHER_BASE_URL

OPENAI_KEY = "openai-secret-456"


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    # ChatOpenAI opens (never connects) a socket to probe TCP keepalive options when
    # it is built; pytest-socket blocks that and warns. Without keepalive: no probe.
    monkeypatch.setenv("LANGCHAIN_OPENAI_TCP_KEEPALIVE", "0")
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "TOGETHER_API_KEY", "VLLM_KEY"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def key_of(model: ChatOpenAI) -> str:
    assert model.openai_api_key is not None
    return model.openai_api_key.get_secret_value()


def describe(model: ChatOpenAI) -> dict:
    """What a config sets on a ChatOpenAI."""
    return {
        "model": model.model_name,
        "base_url": model.openai_api_base,
        "temperature": model.temperature,
        "max_tokens": model.max_tokens,
        "extra_body": model.extra_body,
        "seed": model.seed,
        "top_p": model.top_p,
    }


def stack_of(moa: ChatMoA) -> tuple[list[list[dict]], dict]:
    return [[describe(m) for m in layer] for layer in moa.stack.layers], describe(
        moa.stack.aggregator
    )


YAML_STACK = """\
    # Two proposer layers, one model on a server of our own.
    proposer_layers:
      - - openai:gpt-4o-mini
        - model: openai:qwen-72b
          base_url: http://h:8000/v1
          temperature: 0.2
          seed: 7
      - [openai:gpt-4o-mini]
    aggregator:
      model: openai:gpt-4o
      max_tokens: 100
      top_p: 0.9
    min_proposers: 1
    aggregation: synthesize
    model_name: my-stack
    prompt: Merge these.
"""

TOML_STACK = """\
    # The same stack.
    proposer_layers = [
      [
        "openai:gpt-4o-mini",
        # TOML's inline tables fit on one line.
        {model = "openai:qwen-72b", base_url = "http://h:8000/v1", temperature = 0.2, seed = 7},
      ],
      ["openai:gpt-4o-mini"],
    ]
    min_proposers = 1
    aggregation = "synthesize"
    model_name = "my-stack"
    prompt = "Merge these."

    [aggregator]
    model = "openai:gpt-4o"
    max_tokens = 100
    top_p = 0.9
"""

MINI = {
    "model": "gpt-4o-mini",
    "base_url": None,
    "temperature": 0.7,
    "max_tokens": 2048,
    "extra_body": None,
    "seed": None,
    "top_p": None,
}
QWEN = {
    "model": "qwen-72b",
    "base_url": "http://h:8000/v1",
    "temperature": 0.2,
    "max_tokens": None,
    "extra_body": {"max_tokens": 2048},
    "seed": 7,
    "top_p": None,
}
GPT_4O = {**MINI, "model": "gpt-4o", "max_tokens": 100, "top_p": 0.9}


@pytest.mark.parametrize(("name", "text"), [("stack.yaml", YAML_STACK), ("stack.toml", TOML_STACK)])
def test_yaml_and_toml_describe_the_same_stack(tmp_path, name, text) -> None:
    moa = ChatMoA.from_config(write(tmp_path, name, text))
    assert stack_of(moa) == ([[MINI, QWEN], [MINI]], GPT_4O)
    assert (moa.min_proposers, moa.strategy.name, moa.model_name, moa.prompt) == (
        1,
        "synthesize",
        "my-stack",
        "Merge these.",
    )


def test_yml_and_yaml_endings_read_alike(tmp_path) -> None:
    first = load_config(write(tmp_path, "a.yaml", YAML_STACK))
    assert load_config(write(tmp_path, "a.yml", YAML_STACK)) == first
    assert load_config(write(tmp_path, "a.toml", TOML_STACK)) == first


def test_load_config_returns_the_settings_as_written(tmp_path) -> None:
    path = write(tmp_path, "s.yaml", "proposers: [openai:a]\naggregator: openai:b\nlayers: 2\n")
    assert load_config(str(path)) == {
        "proposers": ["openai:a"],
        "aggregator": "openai:b",
        "layers": 2,
    }


def test_load_stack_is_the_checked_spec_with_the_files_defaults(tmp_path) -> None:
    path = write(tmp_path, "s.yaml", "proposers: [openai:a]\naggregator: openai:b\nlayers: 2\n")
    spec = load_stack(path)
    assert isinstance(spec, StackSpec)
    assert (spec.layers, spec.proposers, spec.aggregator) == (
        2,
        [ModelConfig(model="openai:a")],
        ModelConfig(model="openai:b"),
    )
    # A file that lists models gives them the reference code's settings.
    assert (spec.temperature, spec.max_tokens) == (0.7, 2048)
    own = load_stack(write(tmp_path, "o.yaml", "proposers: [openai:a]\naggregator: openai:b\n"
                           "temperature: 0.1\nmax_tokens: 9\n"))  # fmt: skip
    assert (own.temperature, own.max_tokens) == (0.1, 9)
    # A preset brings its own defaults; the file adds none.
    preset = load_stack(write(tmp_path, "p.yaml", "preset: moa-lite\n"))
    assert (preset.preset, preset.temperature, preset.max_tokens) == ("moa-lite", None, None)


def test_proposers_and_a_layer_count_as_the_paper(tmp_path) -> None:
    path = write(
        tmp_path,
        "paper.yaml",
        """\
        proposers: [openai:gpt-4o-mini, {model: openai:gpt-4o-mini, seed: 2}]
        layers: 2
        aggregator: openai:gpt-4o
        """,
    )
    moa = ChatMoA.from_config(path)
    assert moa.layers == 2
    assert len(moa.stack.layers) == 1
    assert [m.seed for m in moa.stack.layers[0]] == [None, 2]


def test_proposers_default_to_the_papers_three_layers(tmp_path) -> None:
    path = write(tmp_path, "p.toml", 'proposers = ["openai:a"]\naggregator = "openai:b"\n')
    moa = ChatMoA.from_config(path)
    assert moa.layers is None  # the field as given
    assert len(moa.stack.layers) + 1 == 3
    assert moa.model_name == "moa-3l:b"


def test_top_level_generation_settings_are_every_models_default(tmp_path) -> None:
    path = write(
        tmp_path,
        "d.yaml",
        """\
        temperature: 0.3
        max_tokens: 64
        timeout: 20
        max_retries: 1
        proposer_layers: [[openai:a, {model: openai:b, temperature: 1.0, max_retries: 5}]]
        aggregator: {model: openai:c, base_url: "http://h/v1"}
        """,
    )
    moa = ChatMoA.from_config(path)
    ((a, b),) = moa.stack.layers
    aggregator = moa.stack.aggregator
    assert (a.temperature, a.max_tokens, a.request_timeout, a.max_retries) == (0.3, 64, 20, 1)
    assert (b.temperature, b.max_tokens, b.request_timeout, b.max_retries) == (1.0, 64, 20, 5)
    assert (aggregator.temperature, aggregator.extra_body) == (0.3, {"max_tokens": 64})
    assert (aggregator.request_timeout, aggregator.max_retries) == (20, 1)


def test_null_leaves_a_setting_to_the_provider(tmp_path) -> None:
    # e.g. reasoning models, which refuse a temperature.
    path = write(
        tmp_path,
        "n.yaml",
        """\
        proposer_layers: [[{model: openai:o3-mini, temperature: null, max_tokens: null}]]
        aggregator: openai:gpt-4o
        """,
    )
    model = ChatMoA.from_config(path).stack.layers[0][0]
    assert model.temperature is None
    assert model.max_tokens is None
    assert "temperature" not in model._get_request_payload("hi")


def test_api_key_env_supplies_the_key(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VLLM_KEY", "vllm-secret")
    path = write(
        tmp_path,
        "k.yaml",
        """\
        proposer_layers: [[{model: openai:qwen, base_url: "http://h/v1", api_key_env: VLLM_KEY}]]
        aggregator: {model: openai:gpt-4o, api_key_env: VLLM_KEY}
        """,
    )
    moa = ChatMoA.from_config(path)
    assert key_of(moa.stack.layers[0][0]) == "vllm-secret"
    assert key_of(moa.stack.aggregator) == "vllm-secret"


def test_a_server_of_ones_own_never_gets_the_openai_key(tmp_path) -> None:
    path = write(
        tmp_path,
        "o.yaml",
        'proposer_layers: [[{model: openai:qwen, base_url: "http://h/v1"}]]\n'
        "aggregator: openai:gpt-4o\n",
    )
    moa = ChatMoA.from_config(path)
    assert key_of(moa.stack.layers[0][0]) == NO_KEY
    assert key_of(moa.stack.aggregator) == OPENAI_KEY


def test_unset_api_key_env_is_named(tmp_path) -> None:
    path = write(
        tmp_path,
        "k.yaml",
        "proposer_layers: [[openai:a]]\naggregator: {model: openai:b, api_key_env: VLLM_KEY}\n",
    )
    with pytest.raises(
        StackError, match=r"k\.yaml: aggregator\.api_key_env: environment variable VLLM_KEY"
    ):
        ChatMoA.from_config(path)


def test_preset_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VLLM_KEY", "vllm-secret")
    path = write(
        tmp_path,
        "p.yaml",
        """\
        preset: moa-lite
        base_url: http://vllm:8000/v1
        api_key_env: VLLM_KEY
        max_tokens: 512
        temperature: 0.5
        min_proposers: 3
        """,
    )
    moa = ChatMoA.from_config(path)
    assert moa.preset == "moa-lite"
    assert len(moa.stack.layers) + 1 == 2
    assert moa.min_proposers == 3
    for model in [*moa.stack.layers[0], moa.stack.aggregator]:
        assert model.openai_api_base == "http://vllm:8000/v1"
        assert key_of(model) == "vllm-secret"
        assert (model.temperature, model.extra_body) == (0.5, {"max_tokens": 512})
    assert moa.stack.aggregator.model_name == "Qwen/Qwen1.5-72B-Chat"


def test_preset_file_on_together_needs_its_key(tmp_path) -> None:
    path = write(tmp_path, "p.toml", 'preset = "moa"\n')
    with pytest.raises(StackError, match=r"p\.toml: preset 'moa' needs TOGETHER_API_KEY"):
        ChatMoA.from_config(path)


def test_preset_file_on_together(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "together-secret")
    moa = ChatMoA.from_config(write(tmp_path, "p.toml", 'preset = "moa"\n'))
    assert len(moa.stack.layers) + 1 == 3
    assert {m.openai_api_base for m in moa.stack.layers[0]} == {TOGETHER_BASE_URL}
    assert moa.stack.aggregator.extra_body == {"max_tokens": 2048}


@pytest.fixture
def no_process(monkeypatch):
    """Building a stack must start nothing: a started process fails the test."""

    def no_popen(*args, **kwargs):
        raise AssertionError("a process was started")

    monkeypatch.setattr(subprocess, "Popen", no_popen)


def test_local_preset_file(tmp_path, no_process) -> None:
    path = write(tmp_path, "l.yaml", "preset: local\nmax_tokens: 32\naggregation: rank\n")
    moa = ChatMoA.from_config(path)
    assert moa.strategy.name == "rank"
    ((one, two, three),) = moa.stack.layers
    aggregator = moa.stack.aggregator
    for model in (one, two, three, aggregator):
        assert model.openai_api_base == shared_server().base_url
        assert (model.temperature, model.extra_body) == (0.7, {"max_tokens": 32})
    assert [m.seed for m in (one, two, three, aggregator)] == [1, 2, 3, 0]
    assert not shared_server().running


def test_local_model_entries(tmp_path, no_process) -> None:
    path = write(
        tmp_path,
        "local.yaml",
        """\
        proposer_layers:
          - [{model: local-model, seed: 1}, {model: local-model, seed: 2, temperature: 0.9}]
        aggregator: local-model
        max_tokens: 16
        """,
    )
    moa = ChatMoA.from_config(path)
    ((first, second),) = moa.stack.layers
    for model in (first, second, moa.stack.aggregator):
        assert model.openai_api_base == shared_server().base_url
        assert model.extra_body == {"max_tokens": 16}
        assert model.stream_usage is True
    assert (first.seed, first.temperature) == (1, 0.7)
    assert (second.seed, second.temperature) == (2, 0.9)
    assert not shared_server().running  # its models start it on their first request


def test_local_model_config_is_checked_without_a_server(tmp_path, monkeypatch) -> None:
    def no_server(*args, **kwargs):
        raise AssertionError("load_config built a model")

    monkeypatch.setattr(factory, "shared_server", no_server)
    path = write(
        tmp_path,
        "local.toml",
        'proposer_layers = [[{model = "local-model", seed = 1}]]\naggregator = "local-model"\n',
    )
    assert load_config(path)["proposer_layers"] == [[{"model": "local-model", "seed": 1}]]
    bad = write(
        tmp_path,
        "bad.toml",
        'proposer_layers = [[{model = "local-model", sed = 1}]]\naggregator = "local-model"\n',
    )
    with pytest.raises(StackError, match=r"proposer_layers\[0\]\[0\]\.sed: unknown key"):
        load_config(bad)


def test_other_providers_settings_are_checked_when_built(tmp_path, monkeypatch) -> None:
    # A provider whose class took an unknown setting into model_kwargs, as most do.
    def fake_init_chat_model(spec, **params):
        extra = {"temprature": params.pop("temprature")}
        return ChatOpenAI(model="x", api_key="k", model_kwargs=extra, **params)

    monkeypatch.setattr("langchain.chat_models.init_chat_model", fake_init_chat_model)
    path = write(
        tmp_path,
        "f.yaml",
        "proposer_layers: [[{model: 'fake:x', temprature: 1}]]\naggregator: openai:gpt-4o\n",
    )
    assert load_config(path)  # the file's shape is fine: fake's settings are unknown here
    with pytest.raises(
        StackError,
        match=r"f\.yaml: proposer_layers\[0\]\[0\]\.temprature: unknown key \(not a setting",
    ):
        ChatMoA.from_config(path)


def test_a_provider_that_cannot_be_built_is_named(tmp_path) -> None:
    path = write(tmp_path, "p.yaml", "proposers: [no-such-provider:x]\naggregator: openai:b\n")
    with pytest.raises(
        StackError,
        match=r"p\.yaml: proposers\[0\]: cannot create a chat model from 'no-such-provider:x'",
    ):
        ChatMoA.from_config(path)


BAD_CONFIGS = [
    (
        "proposers: [openai:a]\naggregator: openai:b\nlayer: 2\n",
        "layer: unknown key (did you mean 'layers'?)",
    ),
    (
        "proposers: [openai:a]\naggregator: openai:b\nmin_proposer: 1\n",
        "min_proposer: unknown key (did you mean 'min_proposers'?)",
    ),
    (
        (
            "proposer_layers: [[openai:a], [{model: openai:a, temprature: 0.2}]]\n"
            "aggregator: openai:b\n"
        ),
        "proposer_layers[1][0].temprature: unknown key (did you mean 'temperature'?)",
    ),
    (
        "proposer_layers: [[openai:a]]\naggregator: {model: openai:b, max_tokens: lots}\n",
        "aggregator.max_tokens: expected an integer, got 'lots'",
    ),
    (
        "proposer_layers: [[{model: openai:a, max_tokens: 2.5}]]\naggregator: openai:b\n",
        "proposer_layers[0][0].max_tokens: expected an integer, got 2.5",
    ),
    (
        "proposer_layers: [[{model: openai:a, max_tokens: true}]]\naggregator: openai:b\n",
        "proposer_layers[0][0].max_tokens: expected an integer, got True",
    ),
    (
        "proposer_layers: [[{model: openai:a, max_tokens: 0}]]\naggregator: openai:b\n",
        "proposer_layers[0][0].max_tokens: must be at least 1, got 0",
    ),
    (
        "proposer_layers: [[{model: openai:a, temperature: hot}]]\naggregator: openai:b\n",
        "proposer_layers[0][0].temperature: expected a number, got 'hot'",
    ),
    (
        "proposer_layers: [[openai:a]]\naggregator: openai:b\ntemperature: -1\n",
        "temperature: must not be negative, got -1",
    ),
    (
        "proposer_layers: [[{model: openai:a, seed: [1]}]]\naggregator: openai:b\n",
        "proposer_layers[0][0].seed: expected an integer, got a list",
    ),
    (
        "proposers: [openai:a]\naggregator: {model: openai:b, seed: -1}\n",
        "aggregator.seed: must not be negative, got -1",
    ),
    ("proposers: [openai:a]\naggregator: openai:b\ntimeout: 0\n", "timeout: must be more than 0"),
    (
        "proposers: [openai:a]\naggregator: openai:b\nmax_retries: -1\n",
        "max_retries: must not be negative, got -1",
    ),
    ("proposers: [openai:a]\naggregator: openai:b\nstop: END\n", "stop: expected a list"),
    ("proposer_layers: [[openai:a]]\n", "aggregator: missing"),
    ("aggregator: openai:b\n", "aggregator: given without proposers"),
    ("layers: 3\naggregator: openai:b\n", "aggregator: given without proposers"),
    ("proposer_layers: []\naggregator: openai:b\n", "proposer_layers: empty"),
    (
        "proposer_layers: [openai:a]\naggregator: openai:b\n",
        "proposer_layers[0]: expected a list, got 'openai:a'",
    ),
    ("proposer_layers: [[]]\naggregator: openai:b\n", "proposer_layers[0]: empty"),
    ("proposer_layers: 3\naggregator: openai:b\n", "proposer_layers: expected a list, got 3"),
    (
        # The old per-layer form: layers is a count now.
        "layers: [[openai:a]]\naggregator: openai:b\n",
        (
            "layers: is the number of layers (with proposers); give per-layer proposers as "
            "proposer_layers"
        ),
    ),
    (
        "proposers: [openai:a]\nlayers: [[openai:a]]\naggregator: openai:b\n",
        "layers: is the number of layers",
    ),
    (
        "proposers: [openai:a]\nproposer_layers: [[openai:a]]\naggregator: openai:b\n",
        "proposers: give proposers (with layers) or proposer_layers, not both",
    ),
    (
        "proposer_layers: [[openai:a]]\nlayers: 2\naggregator: openai:b\n",
        "layers: proposer_layers fixes the number of layers",
    ),
    ("proposers: [openai:a]\nlayers: 1\naggregator: openai:b\n", "layers: must be at least 2"),
    ("layers: 1\n", "layers: must be at least 2"),
    (
        "proposers: [openai:a]\nlayers: two\naggregator: openai:b\n",
        "layers: expected an integer, got 'two'",
    ),
    ("proposers: openai:a\naggregator: openai:b\n", "proposers: expected a list, got 'openai:a'"),
    ("proposers: []\naggregator: openai:b\n", "proposers: empty"),
    ("proposers: [7]\naggregator: openai:b\n", "proposers[0]: expected a model string or table"),
    (
        "proposers: [{seed: 1}]\naggregator: openai:b\n",
        "proposers[0].model: missing",
    ),
    (
        "proposers: [gpt-4o]\naggregator: openai:b\n",
        "proposers[0].model: expected 'provider:model'",
    ),
    (
        "proposers: ['openai:']\naggregator: openai:b\n",
        "proposers[0].model: expected 'provider:model'",
    ),
    (
        "proposers: [local]\naggregator: openai:b\n",
        "proposers[0].model: 'local' is a whole stack, not a model: use 'local-model'",
    ),
    (
        "proposers: [openai:a]\naggregator: {model: openai:b, model_name: c}\n",
        "aggregator.model_name: write it as 'model'",
    ),
    (
        "proposers: [{model: local-model, base_url: 'http://h/v1'}]\naggregator: openai:b\n",
        "proposers[0].base_url: does not apply to 'local-model'",
    ),
    (
        "proposers: [openai:a]\naggregator: openai:b\nmin_proposers: 2\n",
        "min_proposers: 2 is more than the smallest layer's 1",
    ),
    (
        (
            "proposer_layers: [[openai:a, openai:b], [openai:a]]\naggregator: openai:b\n"
            "min_proposers: 2\n"
        ),
        "min_proposers: 2 is more than",
    ),
    (
        "proposers: [openai:a]\naggregator: openai:b\naggregation: vote\n",
        (
            "aggregation: unknown strategy 'vote'; choose from rank, rank-then-synthesize, "
            "self-moa, self-moa-seq, staircase, synthesize"
        ),
    ),
    ("proposers: [openai:a]\naggregator: openai:b\nprompt: 3\n", "prompt: expected a string"),
    ("proposers: [openai:a]\naggregator: openai:b\nprompt: ''\n", "prompt: must not be empty"),
    (
        "proposers: [openai:a]\naggregator: openai:b\nbase_url: 'http://h/v1'\n",
        "base_url: only with preset",
    ),
    (
        "preset: moa-xl\n",
        "preset: expected one of 'moa', 'moa-lite', 'moa-gpt4o' or 'local', got 'moa-xl'",
    ),
    ("preset: moa\nlayers: 2\n", "layers: not allowed with preset"),
    ("preset: moa\naggregator: openai:b\n", "aggregator: not allowed with preset"),
    ("preset: moa\nproposers: [openai:a]\n", "proposers: not allowed with preset"),
    ("preset: moa\nseed: 1\n", "seed: unknown key"),
    ("preset: local\nbase_url: 'http://h/v1'\n", "base_url: does not apply to preset 'local'"),
    ("preset: moa\nmax_tokens: lots\n", "max_tokens: expected an integer, got 'lots'"),
    ("- openai:a\n", "expected a table of settings at the top, got a list"),
    ("", "expected a table of settings at the top, got nothing (null)"),
    ("1: openai:a\n", "keys must be strings, got 1"),
    ("proposers: [openai:a]\nproposers: [openai:b]\naggregator: openai:b\n", "given twice"),
    ("proposer_layers: [[openai:a]\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_every_error_names_the_file_and_key(tmp_path, text, message) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(StackError, match="^" + re.escape(f"{path}: ")) as caught:
        load_config(path)
    assert message in str(caught.value)
    assert "Value error" not in str(caught.value)


def test_several_mistakes_are_named_on_a_line_each(tmp_path) -> None:
    path = write(
        tmp_path,
        "two.yaml",
        "proposers: [{model: openai:a, max_tokens: 0}]\n"
        "aggregator: {model: openai:b, temperature: hot}\n",
    )
    with pytest.raises(StackError) as caught:
        load_config(path)
    assert str(caught.value).splitlines() == [
        f"{path}: proposers[0].max_tokens: must be at least 1, got 0",
        f"{path}: aggregator.temperature: expected a number, got 'hot'",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'proposer_layers = [["openai:a"]]\n[aggregator]\nmodel = 3\n',
            "aggregator.model: expected a string",
        ),
        ('preset = "moa"\napi_key_env = "X Y"\n', "api_key_env: expected the name"),
        ("proposer_layers = [[\n", "not valid TOML"),
    ],
)
def test_toml_errors_name_the_file_and_key(tmp_path, text, message) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(StackError, match=r"config\.toml: ") as caught:
        load_config(path)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "proposers: [openai:a]\naggregator: {model: openai:b, api_key: sk-live-987}\n",
        "preset: moa\napi_key: sk-live-987\n",
        "preset: moa\napi_key_env: sk-live-987\n",
        "proposers: [{model: openai:a, openai_api_key: sk-live-987}]\naggregator: openai:b\n",
        "proposers: [{model: openai:a, api_key_env: sk-live-987}]\naggregator: openai:b\n",
    ],
)
def test_keys_in_the_file_are_refused_and_never_echoed(tmp_path, text) -> None:
    path = write(tmp_path, "secret.yaml", text)
    with pytest.raises(StackError, match="api_key") as caught:
        load_config(path)
    assert "sk-live-987" not in str(caught.value)


def test_missing_file_is_named(tmp_path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.yaml"):
        ChatMoA.from_config(missing)


def test_unsupported_format_is_named(tmp_path) -> None:
    path = write(tmp_path, "stack.json", "{}")
    with pytest.raises(StackError, match=r"stack\.json: unsupported config format '\.json'"):
        load_config(path)


def test_a_folder_is_not_a_config(tmp_path) -> None:
    folder = tmp_path / "stack.yaml"
    folder.mkdir()
    with pytest.raises(StackError, match="not a file"):
        load_config(folder)


def test_stack_errors_are_value_errors() -> None:
    assert issubclass(StackError, ValueError)


# moa chat --config: argument handling only; a run would call the providers.


def chat_args(*argv: str):
    return cli._parser().parse_args(["chat", *argv, "question"])


def test_cli_config_builds_the_stack(tmp_path) -> None:
    path = write(tmp_path, "stack.yaml", YAML_STACK)
    moa = chat._model(chat_args("--config", str(path)))
    assert isinstance(moa, ChatMoA)
    assert stack_of(moa) == ([[MINI, QWEN], [MINI]], GPT_4O)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "openai:a"], "argument --model: not allowed with argument --config"),
        (["--preset", "moa"], "not allowed with argument"),
        (["--aggregator", "openai:b"], "--aggregator does not apply with --config"),
        (["--layers", "3"], "--layers does not apply with --config"),
        (["--proposers", "2"], "--proposers does not apply with --config"),
        (["--gguf", "m.gguf"], "--gguf does not apply with --config"),
        (["--max-tokens", "9"], "--max-tokens does not apply with --config: set it in the file"),
        # Checked before the policy flags are laid over the file's settings.
        (["--layers", "3", "--timeout-s", "3"], "--layers does not apply with --config"),
    ],
)
def test_cli_config_argument_errors(tmp_path, capsys, argv, message) -> None:
    path = write(tmp_path, "stack.yaml", YAML_STACK)
    with pytest.raises(SystemExit) as caught:
        cli.main(["chat", "--config", str(path), *argv, "hi"])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_missing_config_file(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["chat", "--config", str(tmp_path / "none.yaml"), "hi"])
    assert caught.value.code == 2
    assert "config file not found: " in capsys.readouterr().err


def test_cli_invalid_config_names_the_key(tmp_path, capsys) -> None:
    path = write(tmp_path, "bad.toml", 'preset = "moa"\nlayers = 2\n')
    with pytest.raises(SystemExit) as caught:
        cli.main(["chat", "--config", str(path), "hi"])
    assert caught.value.code == 2
    assert "bad.toml: layers: not allowed with preset" in capsys.readouterr().err


def test_from_config_builds_the_files_stack(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-used")
    path = tmp_path / "stack.yaml"
    path.write_text(
        "proposers: ['openai:gpt-4o-mini', 'openai:gpt-4o']\n"
        "layers: 2\n"
        "aggregator: {model: 'openai:gpt-4o', temperature: 0.1}\n"
    )
    moa = ChatMoA.from_config(path)
    assert isinstance(moa, ChatMoA)
    assert {"layer1/gpt-4o-mini", "layer1/gpt-4o", "aggregator"} <= set(moa.graph.get_graph().nodes)
    assert moa.model_name == "moa-2l:gpt-4o"
    assert moa.stack.aggregator.temperature == 0.1
    assert ChatMoA.from_spec(load_stack(path)).stack.spec == moa.stack.spec


# Model entries and the one model factory behind files, presets and ChatMoA.


def test_a_model_entry_is_a_string_or_a_model_config() -> None:
    assert ModelConfig.model_validate("openai:a") == ModelConfig(model="openai:a")
    entry = ModelConfig(model="anthropic:claude-x", max_tokens=5, top_k=3)
    assert entry.provider == "anthropic"
    assert entry.provider_settings == {"top_k": 3}  # checked when the model is built
    # The entry's own settings over the stack's; None leaves one to the provider.
    assert entry.settings({"temperature": 0.5, "max_tokens": 9}) == {
        "temperature": 0.5,
        "max_tokens": 5,
        "top_k": 3,
    }
    assert ModelConfig(model="openai:a", temperature=None).settings({"temperature": 0.5}) == {}
    assert ModelConfig(model="local-model", seed=1).provider == "local"


def test_the_factory_builds_each_kind_of_entry() -> None:
    instance = ChatOpenAI(model="mine", api_key="k")
    assert factory.chat_model(instance, {"temperature": 0.1}) is instance
    built = factory.chat_model("openai:gpt-4o-mini", {"temperature": 0.1, "max_tokens": 7})
    assert (built.model_name, built.temperature, built.max_tokens) == ("gpt-4o-mini", 0.1, 7)
    assert built.stream_usage is True
    assert key_of(built) == OPENAI_KEY
    own = factory.chat_model(
        ModelConfig(model="openai:qwen", base_url="http://h/v1", top_p=0.5), {"max_tokens": 7}
    )
    assert (own.openai_api_base, own.top_p, own.extra_body) == (
        "http://h/v1",
        0.5,
        {"max_tokens": 7},
    )
    assert key_of(own) == NO_KEY


def test_the_factory_names_the_entry_it_could_not_build() -> None:
    with pytest.raises(
        StackError, match=r"^judge\.api_key_env: environment variable VLLM_KEY is not set$"
    ):
        factory.chat_model({"model": "openai:a", "api_key_env": "VLLM_KEY"}, where="judge")
    with pytest.raises(StackError, match=r"^judge: cannot create a chat model from 'nope:x'"):
        factory.chat_model("nope:x", where="judge")


def test_build_stack_returns_the_models_and_the_written_out_spec(monkeypatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "together-secret")
    stack = factory.build_stack(StackSpec(preset="moa-lite", max_tokens=99))
    assert isinstance(stack, factory.Stack)
    assert stack.spec.preset is None
    assert stack.spec.layers == 2
    assert [len(layer) for layer in stack.layers] == [6]
    assert stack.aggregator.model_name == "Qwen/Qwen1.5-72B-Chat"
    assert {m.extra_body["max_tokens"] for m in [*stack.layers[0], stack.aggregator]} == {99}
    own = factory.build_stack(
        StackSpec(proposer_layers=[["openai:a", "openai:b"], ["openai:c"]], aggregator="openai:d")
    )
    assert [[m.model_name for m in layer] for layer in own.layers] == [["a", "b"], ["c"]]
    assert own.aggregator.model_name == "d"
    assert own.spec.proposer_layers == [
        [ModelConfig(model="openai:a"), ModelConfig(model="openai:b")],
        [ModelConfig(model="openai:c")],
    ]
