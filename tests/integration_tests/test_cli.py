"""``moa chat`` on the embedded model, and that it leaves no server behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration_tests.conftest import llama_server_pids, marked_env

MOA = str(Path(sys.executable).with_name("moa"))


def test_moa_chat_streams_an_answer_and_sums_up() -> None:
    env, mark = marked_env()
    done = subprocess.run(
        [MOA, "chat", "--max-tokens", "16", "--show-layers", "Name three fruits."],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("--- layer1/smollm2-135m-instruct-") == 3
    answer = out.split("--- answer ---", 1)[1]
    assert answer.strip()
    summary = done.stderr.strip().splitlines()[-1]
    assert summary.startswith("layer 1: 3 calls, ")
    assert "aggregator: 1 call," in summary
    assert "total: 4 calls" in summary
    assert not llama_server_pids(mark=mark)


def test_moa_chat_bad_configuration_exits_2() -> None:
    done = subprocess.run(
        [MOA, "chat", "--model", "no-such-provider:x", "hi"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "cannot create a chat model from 'no-such-provider:x'" in done.stderr


def test_sigterm_during_a_run_stops_the_server() -> None:
    env, mark = marked_env()
    cli = subprocess.Popen(
        [MOA, "chat", "--max-tokens", "400", "Write a long essay about rivers."],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not llama_server_pids(mark=mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert llama_server_pids(mark=mark), "the CLI started no server"
        time.sleep(2)  # let the run get going
        os.kill(cli.pid, signal.SIGTERM)
        assert cli.wait(timeout=30) != 0
        deadline = time.monotonic() + 15
        while llama_server_pids(mark=mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not llama_server_pids(mark=mark)
    finally:
        if cli.poll() is None:
            cli.kill()
