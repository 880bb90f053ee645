"""Stacks from YAML and TOML files, and ``moa chat --config``; no network, no llama.cpp server."""

import re
import textwrap

import pytest
from langchain_openai import ChatOpenAI

from langchain_moa import ChatMoA, LlamaServer, cli
from langchain_moa import config as config_module
from langchain_moa.config import chat_moa_from_config, load_config
from langchain_moa.presets import NO_KEY, TOGETHER_BASE_URL

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
    layers = [list(moa.proposers)] * (moa.layers - 1) if isinstance(moa.layers, int) else moa.layers
    return [[describe(m) for m in layer] for layer in layers], describe(moa.aggregator)


YAML_STACK = """\
    # Two proposer layers, one model on a server of our own.
    layers:
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
    layers = [
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
    moa = chat_moa_from_config(write(tmp_path, name, text))
    assert stack_of(moa) == ([[MINI, QWEN], [MINI]], GPT_4O)
    assert (moa.min_proposers, moa.aggregation, moa.model_name, moa.prompt) == (
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
    moa = chat_moa_from_config(path)
    assert moa.layers == 2
    assert [m.seed for m in moa.proposers] == [None, 2]


def test_proposers_default_to_the_papers_three_layers(tmp_path) -> None:
    path = write(tmp_path, "p.toml", 'proposers = ["openai:a"]\naggregator = "openai:b"\n')
    assert chat_moa_from_config(path).layers == 3


def test_top_level_generation_settings_are_every_models_default(tmp_path) -> None:
    path = write(
        tmp_path,
        "d.yaml",
        """\
        temperature: 0.3
        max_tokens: 64
        layers: [[openai:a, {model: openai:b, temperature: 1.0}]]
        aggregator: {model: openai:c, base_url: "http://h/v1"}
        """,
    )
    moa = chat_moa_from_config(path)
    ((a, b),) = moa.layers
    assert (a.temperature, a.max_tokens) == (0.3, 64)
    assert (b.temperature, b.max_tokens) == (1.0, 64)
    assert (moa.aggregator.temperature, moa.aggregator.extra_body) == (0.3, {"max_tokens": 64})


def test_null_leaves_a_setting_to_the_provider(tmp_path) -> None:
    # e.g. reasoning models, which refuse a temperature.
    path = write(
        tmp_path,
        "n.yaml",
        """\
        layers: [[{model: openai:o3-mini, temperature: null, max_tokens: null}]]
        aggregator: openai:gpt-4o
        """,
    )
    model = chat_moa_from_config(path).layers[0][0]
    assert model.temperature is None
    assert model.max_tokens is None
    assert "temperature" not in model._get_request_payload("hi")


def test_api_key_env_supplies_the_key(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VLLM_KEY", "vllm-secret")
    path = write(
        tmp_path,
        "k.yaml",
        """\
        layers: [[{model: openai:qwen, base_url: "http://h/v1", api_key_env: VLLM_KEY}]]
        aggregator: {model: openai:gpt-4o, api_key_env: VLLM_KEY}
        """,
    )
    moa = chat_moa_from_config(path)
    assert key_of(moa.layers[0][0]) == "vllm-secret"
    assert key_of(moa.aggregator) == "vllm-secret"


def test_a_server_of_ones_own_never_gets_the_openai_key(tmp_path) -> None:
    path = write(
        tmp_path,
        "o.yaml",
        'layers: [[{model: openai:qwen, base_url: "http://h/v1"}]]\naggregator: openai:gpt-4o\n',
    )
    moa = chat_moa_from_config(path)
    assert key_of(moa.layers[0][0]) == NO_KEY
    assert key_of(moa.aggregator) == OPENAI_KEY


def test_unset_api_key_env_is_named(tmp_path) -> None:
    path = write(
        tmp_path,
        "k.yaml",
        "layers: [[openai:a]]\naggregator: {model: openai:b, api_key_env: VLLM_KEY}\n",
    )
    with pytest.raises(
        ValueError, match=r"k\.yaml: aggregator\.api_key_env: environment variable VLLM_KEY"
    ):
        chat_moa_from_config(path)


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
    moa = chat_moa_from_config(path)
    assert moa.layers == 2
    assert moa.min_proposers == 3
    for model in [*moa.proposers, moa.aggregator]:
        assert model.openai_api_base == "http://vllm:8000/v1"
        assert key_of(model) == "vllm-secret"
        assert (model.temperature, model.extra_body) == (0.5, {"max_tokens": 512})
    assert moa.aggregator.model_name == "Qwen/Qwen1.5-72B-Chat"


def test_preset_file_on_together_needs_its_key(tmp_path) -> None:
    path = write(tmp_path, "p.toml", 'preset = "moa"\n')
    with pytest.raises(ValueError, match=r"p\.toml: preset 'moa' needs TOGETHER_API_KEY"):
        chat_moa_from_config(path)


def test_preset_file_on_together(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "together-secret")
    moa = chat_moa_from_config(write(tmp_path, "p.toml", 'preset = "moa"\n'))
    assert moa.layers == 3
    assert {m.openai_api_base for m in moa.proposers} == {TOGETHER_BASE_URL}
    assert moa.aggregator.extra_body == {"max_tokens": 2048}


def test_local_preset_file(tmp_path, monkeypatch) -> None:
    seen = {}

    def fake_local(cls, **kwargs):
        seen.update(kwargs)
        return "embedded"

    monkeypatch.setattr(ChatMoA, "local", classmethod(fake_local))
    path = write(tmp_path, "l.yaml", "preset: local\nmax_tokens: 32\naggregation: rank\n")
    assert chat_moa_from_config(path) == "embedded"
    assert seen == {"max_tokens": 32, "temperature": 0.7, "aggregation": "rank"}


@pytest.fixture
def not_started_server(monkeypatch):
    """The embedded server's chat models, without starting the server."""
    server = LlamaServer(port=9)
    monkeypatch.setattr(LlamaServer, "running", property(lambda self: True))
    monkeypatch.setattr(config_module, "shared_server", lambda: server)
    return server


def test_local_model_entries(tmp_path, not_started_server) -> None:
    path = write(
        tmp_path,
        "local.yaml",
        """\
        layers:
          - [{model: local-model, seed: 1}, {model: local-model, seed: 2, temperature: 0.9}]
        aggregator: local-model
        max_tokens: 16
        """,
    )
    moa = chat_moa_from_config(path)
    ((first, second),) = moa.layers
    for model in (first, second, moa.aggregator):
        assert model.openai_api_base == not_started_server.base_url
        assert model.extra_body == {"max_tokens": 16}
        assert model.stream_usage is True
    assert (first.seed, first.temperature) == (1, 0.7)
    assert (second.seed, second.temperature) == (2, 0.9)


def test_local_model_config_is_checked_without_a_server(tmp_path, monkeypatch) -> None:
    def no_server(*args, **kwargs):
        raise AssertionError("load_config started the server")

    monkeypatch.setattr(config_module, "shared_server", no_server)
    path = write(
        tmp_path,
        "local.toml",
        'layers = [[{model = "local-model", seed = 1}]]\naggregator = "local-model"\n',
    )
    assert load_config(path)["layers"] == [[{"model": "local-model", "seed": 1}]]
    bad = write(
        tmp_path,
        "bad.toml",
        'layers = [[{model = "local-model", sed = 1}]]\naggregator = "local-model"\n',
    )
    with pytest.raises(ValueError, match=r"layers\[0\]\[0\]\.sed: unknown key"):
        load_config(bad)


def test_other_providers_settings_are_checked_when_built(tmp_path, monkeypatch) -> None:
    # A provider whose class took an unknown setting into model_kwargs, as most do.
    def fake_resolve(spec, where, **params):
        extra = {"temprature": params.pop("temprature")}
        return ChatOpenAI(model="x", api_key="k", model_kwargs=extra, **params)

    monkeypatch.setattr(config_module, "resolve_model", fake_resolve)
    path = write(
        tmp_path,
        "f.yaml",
        "layers: [[{model: 'fake:x', temprature: 1}]]\naggregator: openai:gpt-4o\n",
    )
    assert load_config(path)  # the file's shape is fine: fake's settings are unknown here
    with pytest.raises(
        ValueError, match=r"f\.yaml: layers\[0\]\[0\]\.temprature: unknown key \(not a setting"
    ):
        chat_moa_from_config(path)


def test_a_provider_that_cannot_be_built_is_named(tmp_path) -> None:
    path = write(tmp_path, "p.yaml", "proposers: [no-such-provider:x]\naggregator: openai:b\n")
    with pytest.raises(
        ValueError,
        match=r"p\.yaml: proposers\[0\]: cannot create a chat model from 'no-such-provider:x'",
    ):
        chat_moa_from_config(path)


BAD_CONFIGS = [
    ("proposers: [openai:a]\naggregator: openai:b\nlayer: 2\n", "layer: unknown key"),
    (
        "layers: [[openai:a], [{model: openai:a, temprature: 0.2}]]\naggregator: openai:b\n",
        "layers[1][0].temprature: unknown key (did you mean 'temperature'?)",
    ),
    (
        "layers: [[openai:a]]\naggregator: {model: openai:b, max_tokens: lots}\n",
        "aggregator.max_tokens: expected an integer, got 'lots'",
    ),
    (
        "layers: [[{model: openai:a, max_tokens: 2.5}]]\naggregator: openai:b\n",
        "layers[0][0].max_tokens: expected an integer, got 2.5",
    ),
    (
        "layers: [[{model: openai:a, max_tokens: true}]]\naggregator: openai:b\n",
        "layers[0][0].max_tokens: expected an integer, got True",
    ),
    (
        "layers: [[{model: openai:a, max_tokens: 0}]]\naggregator: openai:b\n",
        "layers[0][0].max_tokens: must be at least 1, got 0",
    ),
    (
        "layers: [[{model: openai:a, temperature: hot}]]\naggregator: openai:b\n",
        "layers[0][0].temperature: expected a number, got 'hot'",
    ),
    (
        "layers: [[openai:a]]\naggregator: openai:b\ntemperature: -1\n",
        "temperature: must not be negative, got -1",
    ),
    (
        "layers: [[{model: openai:a, seed: [1]}]]\naggregator: openai:b\n",
        "layers[0][0].seed: expected an integer, got a list",
    ),
    ("layers: [[openai:a]]\n", "aggregator: missing"),
    ("aggregator: openai:b\n", "no proposers: give layers"),
    ("layers: []\naggregator: openai:b\n", "layers: empty"),
    ("layers: [openai:a]\naggregator: openai:b\n", "layers[0]: expected a non-empty list"),
    ("layers: [[]]\naggregator: openai:b\n", "layers[0]: expected a non-empty list"),
    ("layers: 3\naggregator: openai:b\n", "layers: expected lists of models"),
    (
        "proposers: [openai:a]\nlayers: [[openai:a]]\naggregator: openai:b\n",
        "layers: with proposers, layers is a count",
    ),
    ("proposers: [openai:a]\nlayers: 1\naggregator: openai:b\n", "layers: must be at least 2"),
    ("proposers: openai:a\naggregator: openai:b\n", "proposers: expected a non-empty list"),
    ("proposers: [7]\naggregator: openai:b\n", "proposers[0]: expected a model string or table"),
    (
        "proposers: [{seed: 1}]\naggregator: openai:b\n",
        "proposers[0].model: missing",
    ),
    ("proposers: [gpt-4o]\naggregator: openai:b\n", "proposers[0]: expected 'provider:model'"),
    ("proposers: ['openai:']\naggregator: openai:b\n", "proposers[0]: expected 'provider:model'"),
    ("proposers: [local]\naggregator: openai:b\n", "proposers[0]: 'local' is a whole stack"),
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
        "layers: [[openai:a, openai:b], [openai:a]]\naggregator: openai:b\nmin_proposers: 2\n",
        "min_proposers: 2 is more than",
    ),
    (
        "proposers: [openai:a]\naggregator: openai:b\naggregation: vote\n",
        "aggregation: expected one of 'synthesize', 'rank', got 'vote'",
    ),
    ("proposers: [openai:a]\naggregator: openai:b\nprompt: 3\n", "prompt: expected a string"),
    (
        "proposers: [openai:a]\naggregator: openai:b\nbase_url: 'http://h/v1'\n",
        "base_url: only with preset",
    ),
    ("preset: moa-xl\n", "preset: expected one of moa, moa-lite, moa-gpt4o, local, got 'moa-xl'"),
    ("preset: moa\nlayers: 2\n", "layers: not allowed with preset"),
    ("preset: moa\naggregator: openai:b\n", "aggregator: not allowed with preset"),
    ("preset: moa\nseed: 1\n", "seed: unknown key"),
    ("preset: local\nbase_url: 'http://h/v1'\n", "base_url: does not apply to preset 'local'"),
    ("preset: moa\nmax_tokens: null\n", "max_tokens: expected an integer, got nothing (null)"),
    ("- openai:a\n", "expected a table of settings at the top, got a list"),
    ("", "expected a table of settings at the top, got nothing (null)"),
    ("proposers: [openai:a]\nproposers: [openai:b]\naggregator: openai:b\n", "given twice"),
    ("layers: [[openai:a]\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_every_error_names_the_file_and_key(tmp_path, text, message) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="^" + re.escape(f"{path}: ")) as caught:
        load_config(path)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'layers = [["openai:a"]]\n[aggregator]\nmodel = 3\n',
            "aggregator.model: expected a string",
        ),
        ('preset = "moa"\napi_key_env = "X Y"\n', "api_key_env: expected the name"),
        ("layers = [[\n", "not valid TOML"),
    ],
)
def test_toml_errors_name_the_file_and_key(tmp_path, text, message) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"config\.toml: ") as caught:
        load_config(path)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "proposers: [openai:a]\naggregator: {model: openai:b, api_key: sk-live-987}\n",
        "preset: moa\napi_key: sk-live-987\n",
        "preset: moa\napi_key_env: sk-live-987\n",
        "proposers: [{model: openai:a, openai_api_key: sk-live-987}]\naggregator: openai:b\n",
    ],
)
def test_keys_in_the_file_are_refused_and_never_echoed(tmp_path, text) -> None:
    path = write(tmp_path, "secret.yaml", text)
    with pytest.raises(ValueError, match="api_key") as caught:
        load_config(path)
    assert "sk-live-987" not in str(caught.value)


def test_missing_file_is_named(tmp_path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.yaml"):
        chat_moa_from_config(missing)


def test_unsupported_format_is_named(tmp_path) -> None:
    path = write(tmp_path, "stack.json", "{}")
    with pytest.raises(ValueError, match=r"stack\.json: unsupported config format '\.json'"):
        load_config(path)


def test_a_folder_is_not_a_config(tmp_path) -> None:
    folder = tmp_path / "stack.yaml"
    folder.mkdir()
    with pytest.raises(ValueError, match="not a file"):
        load_config(folder)


# moa chat --config: argument handling only; a run would call the providers.


def chat_args(*argv: str):
    return cli._parser().parse_args(["chat", *argv, "question"])


def test_cli_config_builds_the_stack(tmp_path) -> None:
    path = write(tmp_path, "stack.yaml", YAML_STACK)
    moa = cli._model(chat_args("--config", str(path)))
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
        (["--min-proposers", "1"], "--min-proposers does not apply with --config"),
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


def test_chat_moa_from_config_is_the_config_modules_builder(tmp_path, monkeypatch) -> None:
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
