"""Where data comes from: a user's folder, the package, or a checked download into the cache."""

import hashlib
import re
import sys
import threading
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from langchain_moa.eval import data, flask
from langchain_moa.eval.data import ChecksumError, DataFile, DownloadError, locate
from langchain_moa.eval.extras import MissingExtraError
from langchain_moa.eval.registry import BENCHMARKS
from tests.fixtures import FIXTURES

LOCAL_ONLY = pytest.mark.allow_hosts(["127.0.0.1"])
FLASK_FILES = ("EVALUATION_FILE", "SKILLSET_FILE", "PROMPT_FILE")


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Server:
    """tests/fixtures over HTTP on 127.0.0.1, counting the files it serves."""

    def __init__(self):
        self.served = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):
                server.served.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(Handler, directory=str(FIXTURES))
        )
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        # A short poll keeps shutdown quick.
        serve = partial(self._httpd.serve_forever, poll_interval=0.01)
        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    running = _Server()
    yield running
    running.close()


@pytest.fixture
def cache(monkeypatch, tmp_path):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MOA_CACHE_DIR", str(folder))
    return folder


def _served_file(server, path):
    """A DataFile downloaded from the local server, pinned to the fixture's checksum."""
    return DataFile(path, _sha256(FIXTURES / path), f"{server.url}/{path}")


@LOCAL_ONLY
def test_first_use_downloads_and_later_uses_read_the_cache(server, cache) -> None:
    file = _served_file(server, "flask/prompt.jsonl")

    first = locate(file)
    again = locate(file)

    assert first == again == cache / "flask" / "prompt.jsonl"
    assert first.read_bytes() == (FIXTURES / "flask" / "prompt.jsonl").read_bytes()
    assert server.served == ["/flask/prompt.jsonl"]


@LOCAL_ONLY
def test_flask_loaders_download_their_files_once(server, cache, monkeypatch) -> None:
    for name in FLASK_FILES:
        pinned = getattr(flask, name)
        monkeypatch.setattr(flask, name, _served_file(server, pinned.path))

    instances = flask.load_instances()
    skills = flask.load_skills()
    prompt = flask.load_reviewer_prompt()
    assert instances == flask.load_instances(FIXTURES)
    assert skills == flask.load_skills(FIXTURES)
    assert prompt == flask.load_reviewer_prompt(FIXTURES)
    assert sorted(server.served) == [
        "/flask/flask_evaluation.jsonl", "/flask/prompt.jsonl", "/flask/skillset_description.json"
    ]  # fmt: skip

    assert flask.load_instances() == instances
    assert len(server.served) == 3
    assert sorted(p.name for p in (cache / "flask").iterdir()) == [
        "flask_evaluation.jsonl", "prompt.jsonl", "skillset_description.json"
    ]  # fmt: skip


@LOCAL_ONLY
def test_a_wrong_checksum_is_an_error_and_nothing_is_kept(server, cache) -> None:
    file = replace(_served_file(server, "flask/prompt.jsonl"), sha256="0" * 64)

    with pytest.raises(ChecksumError) as caught:
        locate(file)

    message = str(caught.value)
    assert "flask/prompt.jsonl" in message
    assert file.url in message
    assert "0" * 64 in message
    assert f"nothing was kept in {cache / 'flask'}" in message
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    assert isinstance(caught.value, DownloadError)


@LOCAL_ONLY
def test_a_corrupt_cached_file_is_downloaded_again(server, cache) -> None:
    file = _served_file(server, "flask/reviewer.jsonl")
    target = cache / "flask" / "reviewer.jsonl"
    target.parent.mkdir(parents=True)
    target.write_text("truncated")

    assert locate(file).read_bytes() == (FIXTURES / file.path).read_bytes()
    assert server.served == ["/flask/reviewer.jsonl"]


@LOCAL_ONLY
def test_a_failed_download_names_the_file_and_its_source(server, cache) -> None:
    file = DataFile("flask/absent.jsonl", "0" * 64, f"{server.url}/flask/absent.jsonl")

    with pytest.raises(DownloadError, match=r"could not download flask/absent\.jsonl from http"):
        locate(file)
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_a_data_folder_overrides_the_download(monkeypatch) -> None:
    # No server, and sockets are off: nothing is downloaded.
    monkeypatch.setenv("MOA_DATA_DIR", str(FIXTURES))
    assert locate(flask.EVALUATION_FILE) == FIXTURES / "flask" / "flask_evaluation.jsonl"
    assert [row["idx"] for row in flask.load_instances()][:3] == [1, 2, 3]


def test_a_data_folder_overrides_the_packaged_data(tmp_path) -> None:
    file = BENCHMARKS[-1].files[0]
    assert locate(file, FIXTURES) == FIXTURES / file.path
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / file.path))):
        locate(file, tmp_path)
    with pytest.raises(FileNotFoundError, match="benchmark data folder not found"):
        locate(file, tmp_path / "nowhere")


def test_downloading_without_pooch_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pooch", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'langchain-moa\[eval\]'"):
        locate(flask.EVALUATION_FILE)


def test_the_cache_folder_defaults_to_the_users(monkeypatch) -> None:
    monkeypatch.delenv("MOA_CACHE_DIR")
    assert data.cache_dir().name == "langchain-moa"


def test_packaged_files_are_the_pinned_upstream_files() -> None:
    packaged = [f for b in BENCHMARKS for f in b.files if f.packaged]
    assert {f.path.split("/")[0] for f in packaged} == {"alpaca_eval", "mt_bench", "gsm8k"}
    for file in packaged:
        assert hashlib.sha256(locate(file).read_bytes()).hexdigest() == file.sha256, file.path


def test_each_packaged_folder_has_its_licence_and_notice() -> None:
    for folder, licence in [
        ("alpaca_eval", "LICENSE-Apache-2.0"),
        ("mt_bench", "LICENSE"),
        ("gsm8k", "LICENSE"),
    ]:
        notice = data.packaged(f"{folder}/NOTICE.md").read_text(encoding="utf-8")
        assert data.packaged(f"{folder}/{licence}").is_file()
        for file in (f for b in BENCHMARKS for f in b.files if f.path.startswith(folder)):
            assert file.sha256 in notice, file.path
    assert "CC BY-NC 4.0" in data.packaged("alpaca_eval/NOTICE.md").read_text(encoding="utf-8")


def test_downloads_are_pinned_to_a_commit() -> None:
    downloads = [f for b in BENCHMARKS for f in b.files if not f.packaged]
    assert {f.path.split("/")[0] for f in downloads} == {"flask"}
    for file in (*downloads, flask.HARD_EVALUATION_FILE, flask.REVIEWER_FILE):
        assert re.fullmatch(
            r"https://raw\.githubusercontent\.com/kaistAI/FLASK/[0-9a-f]{40}/\S+", file.url
        )
        assert re.fullmatch(r"[0-9a-f]{64}", file.sha256)
