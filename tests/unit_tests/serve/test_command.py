"""``moa serve``'s command line: which stacks it serves, its token, a missing extra."""

import sys
import threading
import time

import pytest
from starlette.testclient import TestClient

from langchain_moa import cli
from langchain_moa.cli import serve
from langchain_moa.serve import app as app_module

LOCAL = "http://127.0.0.1:8000"
"""Where a client of ``moa serve`` on its default host reaches it."""

STACK = "proposers: ['openai:gpt-4o-mini']\naggregator: 'openai:gpt-4o-mini'\nlayers: 2\n"


@pytest.fixture
def served(monkeypatch):
    """Runs ``moa serve`` up to uvicorn, and keeps the app it would have served."""
    apps = []
    monkeypatch.setattr(app_module, "run", lambda app, **kwargs: apps.append((app, kwargs)))
    monkeypatch.delenv("MOA_SERVE_API_KEY", raising=False)
    return apps


def test_presets_and_stack_files_are_served_by_name(served, tmp_path):
    named = tmp_path / "named.yaml"
    named.write_text(STACK + "model_name: team\n", encoding="utf-8")
    unnamed = tmp_path / "fast.toml"
    unnamed.write_text('proposers = ["openai:a"]\naggregator = "openai:a"\n', encoding="utf-8")
    argv = ["serve", "--port", "9", "--stack", str(named), "--stack", str(unnamed)]
    assert cli.main(argv) == 0
    ((app, kwargs),) = served
    assert kwargs["host"] == "127.0.0.1"
    assert kwargs["port"] == 9
    with TestClient(app, base_url=LOCAL) as client:
        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
        page = client.get("/")
    assert ids == ["local", "moa", "moa-lite", "moa-gpt4o", "team", "fast"]
    assert page.status_code == 200


def test_moa_serve_says_where_it_listens_and_opens_no_browser(served, monkeypatch, capsys):
    monkeypatch.setattr(serve.webbrowser, "open", lambda url: pytest.fail(f"opened {url}"))
    assert cli.main(["serve", "--port", "0"]) == 0
    ((_, kwargs),) = served
    # run() calls back with the port it bound (0 asks for a free one).
    kwargs["listening"]("http://127.0.0.1:43210/")
    err = capsys.readouterr().err
    assert "http://127.0.0.1:43210/v1 and the live page at http://127.0.0.1:43210/" in err
    assert "no token asked for" in err


def test_moa_ui_opens_the_page_without_holding_up_the_server(served, monkeypatch):
    # webbrowser.open waits for a console browser to exit, which waits for the page.
    called, release = threading.Event(), threading.Event()
    opened = []

    def slow_browser(url):
        opened.append(url)
        called.set()
        release.wait(10)
        return True

    monkeypatch.setattr(serve.webbrowser, "open", slow_browser)
    assert cli.main(["ui", "--port", "9"]) == 0
    ((app, kwargs),) = served
    started = time.perf_counter()
    kwargs["listening"](app_module.page_url("127.0.0.1", 9))
    assert time.perf_counter() - started < 1
    assert called.wait(5)
    release.set()
    assert opened == ["http://127.0.0.1:9/"]
    with TestClient(app, base_url=LOCAL) as client:
        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids[0] == "local"


def test_moa_ui_without_a_browser_only_serves(served, monkeypatch, capsys):
    monkeypatch.setattr(serve.webbrowser, "open", lambda url: pytest.fail(f"opened {url}"))
    assert cli.main(["ui", "--no-browser"]) == 0
    ((_, kwargs),) = served
    kwargs["listening"]("http://127.0.0.1:8000/")
    assert "the live page at http://127.0.0.1:8000/" in capsys.readouterr().err


def test_moa_ui_says_where_the_page_is_when_no_browser_opens(served, monkeypatch, capsys):
    monkeypatch.setattr(serve.webbrowser, "open", lambda url: False)
    assert cli.main(["ui"]) == 0
    ((_, kwargs),) = served
    kwargs["listening"]("http://127.0.0.1:8000/")
    err, deadline = "", time.monotonic() + 5
    # Said by the thread that tried to open it.
    while "yourself" not in err and time.monotonic() < deadline:
        err += capsys.readouterr().err
        time.sleep(0.01)
    assert "open http://127.0.0.1:8000/ yourself" in err


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:80/"),
        ("0.0.0.0", "http://127.0.0.1:80/"),  # noqa: S104 - an address read, not bound
        ("::", "http://[::1]:80/"),
        ("localhost", "http://localhost:80/"),
    ],
)
def test_the_page_address_is_one_a_browser_here_can_reach(host, url):
    assert app_module.page_url(host, 80) == url


def test_two_stacks_under_one_name_are_refused(served, tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.yaml").write_text(STACK, encoding="utf-8")
    argv = [
        "serve",
        "--stack",
        str(tmp_path / "a/same.yaml"),
        "--stack",
        str(tmp_path / "b/same.yaml"),
    ]
    with pytest.raises(SystemExit) as raised:
        cli.main(argv)
    assert raised.value.code == 2
    assert "'same'" in capsys.readouterr().err
    assert not served


def test_the_token_comes_from_the_named_variable(served, monkeypatch):
    monkeypatch.setenv("MY_TOKEN", "token-from-the-environment")
    assert cli.main(["serve", "--api-key-env", "MY_TOKEN"]) == 0
    ((app, _),) = served
    with TestClient(app, base_url=LOCAL) as client:
        assert client.get("/v1/models").status_code == 401
        headers = {"Authorization": "Bearer token-from-the-environment"}
        assert client.get("/v1/models", headers=headers).status_code == 200


def test_the_default_variable_is_read_when_set(served, monkeypatch, capsys):
    monkeypatch.setenv("MOA_SERVE_API_KEY", "the-default-token")
    assert cli.main(["serve"]) == 0
    ((app, _),) = served
    with TestClient(app, base_url=LOCAL) as client:
        assert client.get("/v1/models").status_code == 401
    assert "the-default-token" not in capsys.readouterr().err


def test_a_named_variable_that_is_not_set_is_an_error(served, monkeypatch, capsys):
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    with pytest.raises(SystemExit) as raised:
        cli.main(["serve", "--api-key-env", "NOT_SET_HERE"])
    assert raised.value.code == 2
    assert "NOT_SET_HERE" in capsys.readouterr().err


def test_without_the_serve_extra_the_message_says_what_to_install(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "langchain_moa.serve.app")
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    with pytest.raises(SystemExit) as raised:
        cli.main(["serve"])
    assert raised.value.code == 2
    assert "pip install 'langchain-moa[serve]'" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_on_a_loopback_address_only_loopback_names_are_answered(served, host):
    assert cli.main(["serve", "--host", host]) == 0
    ((app, _),) = served
    with TestClient(app, base_url=LOCAL) as client:
        for name in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"):
            assert client.get("/health", headers={"host": name}).status_code == 200, name
        # A site's name made to point at 127.0.0.1 (DNS rebinding) is not this server's.
        for name in ("rebind.example:8000", "127.0.0.1.example", "", "[::1"):
            refused = client.get("/", headers={"host": name})
            assert refused.status_code == 400, name
            assert "does not answer for the host" in refused.json()["error"]["message"]


def test_on_every_address_any_name_is_answered(served, monkeypatch):
    monkeypatch.setenv("MOA_SERVE_API_KEY", "a-long-serve-token-0123")
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 0  # noqa: S104 - the flag, not a bind
    ((app, _),) = served
    with TestClient(app, base_url="http://moa.internal:8000") as client:
        assert client.get("/health").status_code == 200
