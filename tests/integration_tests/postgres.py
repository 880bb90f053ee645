"""A real PostgreSQL server for the tests: Debian's, in a temporary data folder, on 127.0.0.1.

``make postgres`` (which ``make integration`` runs) installs Debian's ``postgresql``
package where it is missing; nothing else of the machine's is used: not its
clusters, not a service. The server is the package's own binaries
(``/usr/lib/postgresql/<version>/bin``, or ``MOA_TEST_PG_BIN``) run on a cluster
made for the test session in a temporary folder, listening on a free port of
127.0.0.1 only, with its socket in that folder. PostgreSQL refuses to run as
root, so where the tests do, the cluster belongs to the package's ``postgres``
user and every command runs as that user. It is stopped, and the folder
removed, when the session ends.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN_ENV = "MOA_TEST_PG_BIN"
SUPERUSER = "moa"
START_TIMEOUT_S = 60


def bin_dir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are: ``MOA_TEST_PG_BIN``, else Debian's newest."""
    if given := os.environ.get(BIN_ENV):
        return Path(given)
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    if not found:
        pytest.fail(
            "no PostgreSQL server binaries under /usr/lib/postgresql: run `make postgres` "
            f"(Debian's postgresql package), or set {BIN_ENV}"
        )
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Postgres:
    """A running server: ``url`` is a libpq connection URI for its ``postgres`` database."""

    url: str
    data: Path
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """Make a cluster in a temporary folder, start it, yield it, stop it, remove the folder."""
    binaries = bin_dir()
    root = Path(tempfile.mkdtemp(prefix="moa-pg-"))
    data, log = root / "data", root / "server.log"
    owner = None
    if os.geteuid() == 0:
        # PostgreSQL will not run as root: the cluster is its package's system user's.
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
            extra_groups=[] if owner else None,
            capture_output=True,
            text=True,
            check=False,
            timeout=START_TIMEOUT_S,
            cwd=root,
        )

    port = _free_port()
    try:
        made = run(
            str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--no-instructions",
        )  # fmt: skip
        if made.returncode:
            pytest.fail(f"initdb failed ({made.returncode}):\n{made.stdout}\n{made.stderr}")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=200"
        started = run(
            str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
            "-w", "-t", str(START_TIMEOUT_S), "start",
        )  # fmt: skip
        server = Postgres(f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres", data, log)
        if started.returncode:
            pytest.fail(f"pg_ctl start failed:\n{started.stderr}\n{server.log_tail()}")
        try:
            yield server
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
