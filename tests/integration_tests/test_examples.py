"""Every example runs offline on the embedded model."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration_tests.conftest import llama_server_pids, marked_env

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.py"))


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(example: Path) -> None:
    env, mark = marked_env()
    done = subprocess.run(
        [sys.executable, str(example)],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert not llama_server_pids(mark=mark)
