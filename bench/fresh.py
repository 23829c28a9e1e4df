"""What the benchmarks share: a fresh PostgreSQL database, and a child run with a limit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
STALLED = 2


@contextlib.contextmanager
def postgres_database(url: str, suffix: str) -> Iterator[str]:
    """A new database beside ``url``'s, named after it with ``suffix`` appended; its
    URL. Dropped afterwards (and first, if a killed run left it behind)."""
    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/") + suffix
    admin = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunparse(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_child(args: list[str], env: dict[str, str], limit: float | None) -> int:
    """``python <args>`` in a fresh interpreter with ``env`` added; killed, and
    reported as stalled (exit status 2), if it outlives ``limit`` seconds."""
    proc = subprocess.Popen(
        [sys.executable, *args], env={**os.environ, **env}, cwd=ROOT, start_new_session=True
    )
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        print(f"\n  STALLED: no result within {limit:.0f} s; killed after the last line above")
        return STALLED
