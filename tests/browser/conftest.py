"""Fixtures for browser tests: the real single-process server and the system Chromium.

The server runs exactly as ``make run`` does (``manage.py serve``: uvicorn, an
in-process Huey consumer and simulated meters) in a subprocess with its own
SQLite database and Huey file in a temporary directory, so these tests never
touch pytest-django's test database.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "test-results"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {
    "viewport": {"width": 360, "height": 740},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "locale": "en-GB",
    "timezone_id": "Europe/London",
}
# Settings the server must not inherit from the test run: it uses its own
# SQLite database and Huey file, as a fresh ``make run`` would.
SERVER_ENV_DROP = (
    "DATABASE_URL",
    "REDIS_URL",
    "SQLITE_PATH",
    "HUEY_SQLITE_PATH",
    "HOST",
    "PORT",
)
HEALTH_TIMEOUT_S = 60
SHUTDOWN_TIMEOUT_S = 15

# Where the running server writes its output; shown in the report of a failed test.
_server_log: dict[str, Path] = {}
# The running server's environment, for management commands against its database.
_server_env: dict[str, dict[str, str]] = {}


def _chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, limit: int = 20000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server output)"
    return text if len(text) <= limit else "…\n" + text[-limit:]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    log = _server_log.get("path")
    if report.failed and log is not None and "browser" in item.keywords:
        report.sections.append(("submeter server output", _tail(log)))
    return report


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = _chromium()
    if path is None:
        pytest.skip(
            "browser tests drive the system Chromium, which is not installed "
            "(Debian/Ubuntu: apt-get install -y chromium)"
        )
    return path


@contextlib.contextmanager
def _serve() -> Iterator[str]:
    """The real ``manage.py serve`` on a free port, with a fresh seeded demo database.

    While it runs, its log and environment are the ones failed tests and
    ``server_manage`` use; a server started inside another restores the outer
    one's on the way out.
    """
    outer_log = _server_log.get("path")
    outer_env = _server_env.get("env")
    var_dir = Path(tempfile.mkdtemp(prefix="submeter-browser-"))
    log_path = var_dir / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_DROP}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.dev",
        SUBMETER_VAR_DIR=str(var_dir),
        PYTHONUNBUFFERED="1",
        # Live pages notice a silent socket after two heartbeats and a bit: seconds here.
        LIVE_HEARTBEAT_SECONDS="3",
    )
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    manage = [sys.executable, "manage.py"]
    log = log_path.open("wb")
    proc: subprocess.Popen[bytes] | None = None
    try:
        for step in (["migrate", "--noinput"], ["demo_seed"]):
            done = subprocess.run(
                manage + step,
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=180,
                check=False,
            )
            if done.returncode != 0:
                log.flush()
                pytest.fail(
                    f"manage.py {' '.join(step)} failed ({done.returncode}):\n{_tail(log_path)}"
                )
        proc = subprocess.Popen(
            [*manage, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: signals reach only the server
        )
        _server_log["path"] = log_path
        _server_env["env"] = env
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail(f"the server exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                with urllib.request.urlopen(base_url + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    f"/healthz did not answer 200 within {HEALTH_TIMEOUT_S} s:\n{_tail(log_path)}"
                )
            time.sleep(0.25)
        yield base_url
    finally:
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except ProcessLookupError:
                pass
        log.close()
        _server_log.pop("path", None)
        _server_env.pop("env", None)
        if outer_log is not None and outer_env is not None:
            _server_log["path"] = outer_log
            _server_env["env"] = outer_env
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def submeter_server(chromium_path: str) -> Iterator[str]:
    """One demo server shared by the browser tests: the demo's clock runs from
    its start, so a test must not rely on how long ago that was."""
    with _serve() as base_url:
        yield base_url


@pytest.fixture
def fresh_submeter_server(chromium_path: str) -> Iterator[str]:
    """A demo server of the test's own, started for it: for a test that follows
    the demo's timeline from the seed (Flat 1's opening credit running out), which
    the tests before it on a shared server would have moved on."""
    with _serve() as base_url:
        yield base_url


@pytest.fixture
def server_manage(submeter_server: str) -> Any:
    """Run ``manage.py <args>`` against the running server's database; returns its stdout.

    For data a test needs that the demo does not have, and for checks (the
    ledger) that no page shows; the server itself is only driven through pages.
    """

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT,
            env=_server_env["env"],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    return run


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    """Chromium for one test module.

    Not session-wide: while sync Playwright runs, this thread appears to have a
    running asyncio loop, which breaks the async tests that run after it.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def phone(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory of phone-sized browser contexts, closed after the test.

    If the test failed, every page still open is saved as a screenshot first.
    """
    contexts: list[Any] = []

    def new_context() -> Any:
        context = browser.new_context(**PHONE)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield new_context
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        RESULTS_DIR.mkdir(exist_ok=True)
        for i, context in enumerate(contexts):
            for j, page in enumerate(context.pages):
                with contextlib.suppress(Exception):  # a screenshot must not hide the failure
                    page.screenshot(
                        path=str(RESULTS_DIR / f"{request.node.name}-failed-{i}-{j}.png"),
                        full_page=True,
                    )
    for context in contexts:
        context.close()
