"""The README's examples that need no provider run as they are, on the embedded model.

The offline one opens ``examples/quickstart.py``, which ``test_examples.py`` runs;
the OpenAI client's runs here, against a real ``moa serve``.

The one that names providers (the paper's stack on Together and OpenAI) runs in
``test_docs_run.py``, with every other block of the docs, against servers on
127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_pages import README_ON_THE_EMBEDDED_MODEL, ROOT, blocks
from tests.integration_tests.conftest import llama_server_pids, marked_env
from tests.integration_tests.embedded import free_port, wait_until_healthy

OFFLINE, CLIENT = README_ON_THE_EMBEDDED_MODEL
MOA = str(Path(sys.executable).with_name("moa"))
BLOCKS = [body for _, _, body in blocks("python", [ROOT / "README.md"])]

pytestmark = pytest.mark.timeout(400)


def _example(needle: str) -> str:
    (block,) = [b for b in BLOCKS if needle in b]
    return block


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=300, check=False, env=env, cwd=ROOT,
    )  # fmt: skip


def test_the_offline_example_is_where_test_examples_runs_it() -> None:
    # examples/quickstart.py opens with it, word for word, and test_examples runs that
    # file on the embedded model (an answer printed, its server stopped at exit): the
    # block runs there rather than once more here.
    block = _example(OFFLINE)
    assert block in (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")


def test_the_openai_client_example_answers_through_moa_serve() -> None:
    port = free_port()
    env, mark = marked_env()
    serve = subprocess.Popen(
        [MOA, "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until_healthy(serve, port)
        code = _example(CLIENT)
        assert "127.0.0.1:8000" in code
        done = _run(code.replace("127.0.0.1:8000", f"127.0.0.1:{port}"), os.environ.copy())
        assert done.returncode == 0, done.stderr[-3000:]
        assert "total_tokens=" in done.stdout  # the answer, then its usage
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=30)
    assert not llama_server_pids(mark=mark)
