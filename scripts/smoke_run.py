"""Smoke test of ``make run``: the whole product starts, takes device readings and stops.

Run from the repository root with the project's virtualenv:

    .venv/bin/python scripts/smoke_run.py

It starts ``make run`` in its own process group on a free port with a fresh
``SUBMETER_VAR_DIR`` (so a new SQLite database and Huey file), waits for
``/healthz``, streams three readings as device ``demo-1`` with
``manage.py simulate``, checks they were stored, then stops the server with
Ctrl-C (SIGINT) and checks it exits in time. Every check prints a PASS or
FAIL line; the exit status is non-zero if any failed. The server's process
group and the temporary directory are always cleaned up.

The embedded default is what is tested: DATABASE_URL and REDIS_URL are
removed from the server's environment.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
HEALTH_TIMEOUT_S = float(os.environ.get("SMOKE_HEALTH_TIMEOUT", "120"))
SIMULATE_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
READINGS = 3
DEVICE = "demo-1"

failures: list[str] = []


def check(ok: bool, what: str, detail: str = "") -> bool:
    line = f"{'PASS' if ok else 'FAIL'}: {what}"
    if detail:
        line += f" ({detail})"
    print(line, flush=True)
    if not ok:
        failures.append(what)
    return ok


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(port: int, var_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "DJANGO_SETTINGS_MODULE",
        "SQLITE_PATH",
        "HUEY_SQLITE_PATH",
    ):
        env.pop(name, None)
    env.update(
        {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "SUBMETER_VAR_DIR": var_dir,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class Output:
    """Collects the server's output in a thread and echoes it, indented."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._thread.start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
            print(f"  | {line.rstrip()}", flush=True)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 (loopback URL built here)
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not group_alive(pgid):
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.1)


def run_smoke(port: int, var_dir: str) -> None:
    env = server_env(port, var_dir)
    base = f"http://127.0.0.1:{port}"
    print(f"smoke: starting 'make run' on port {port}, SUBMETER_VAR_DIR={var_dir}", flush=True)
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    pgid = proc.pid
    out = Output(proc)
    try:
        # 1. The health endpoint answers.
        started = time.monotonic()
        up = False
        while time.monotonic() - started < HEALTH_TIMEOUT_S:
            if proc.poll() is not None:
                break
            if healthy(f"{base}/healthz"):
                up = True
                break
            time.sleep(0.5)
        waited = time.monotonic() - started
        if not check(
            up, f"/healthz answers 200 within {HEALTH_TIMEOUT_S:.0f} s", f"{waited:.1f} s"
        ):
            if proc.poll() is not None:
                print(f"smoke: 'make run' exited early with status {proc.returncode}")
            return

        # 2. The address is printed.
        want = f"{base}/"
        deadline = time.monotonic() + 10
        while want not in out.text() and time.monotonic() < deadline:
            time.sleep(0.2)
        check(want in out.text(), f"'make run' printed the address {want}")
        check("tenant1" in out.text(), "'make run' printed the demo logins")

        # 3. A device streams readings over the real socket.
        sim_started = datetime.now(UTC)
        try:
            sim = subprocess.run(
                [
                    PYTHON,
                    "manage.py",
                    "simulate",
                    "--url",
                    f"ws://127.0.0.1:{port}",
                    "--device",
                    DEVICE,
                    "--readings",
                    str(READINGS),
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=SIMULATE_TIMEOUT_S,
            )
            sim_out = (sim.stdout + sim.stderr).strip()
            sim_ok = sim.returncode == 0
        except subprocess.TimeoutExpired:
            sim_out, sim_ok = f"timed out after {SIMULATE_TIMEOUT_S:.0f} s", False
        for line in sim_out.splitlines():
            print(f"  simulate | {line}")
        check(sim_ok, f"manage.py simulate --device {DEVICE} --readings {READINGS} exits 0")
        check(
            f"{DEVICE}: {READINGS} readings sent" in sim_out,
            f"simulate reports {READINGS} readings sent",
        )

        # 4. The readings are in the database, rated by the in-process task
        # consumer within seconds of being stored.
        code = (
            "import time\n"
            "from meters.models import Reading\n"
            "from django.utils.dateparse import parse_datetime\n"
            f"since = parse_datetime({sim_started.isoformat()!r})\n"
            f"rated = Reading.objects.filter(device__ident={DEVICE!r}, received_at__gte=since)\n"
            "deadline = time.monotonic() + 20\n"
            f"while rated.count() < {READINGS} and time.monotonic() < deadline:\n"
            "    time.sleep(0.2)\n"
            "print(f'SMOKE_READINGS={rated.count()}')\n"
        )
        shell = subprocess.run(
            [PYTHON, "manage.py", "shell", "-v", "0", "-c", code],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        match = re.search(r"SMOKE_READINGS=(\d+)", shell.stdout)
        count = int(match.group(1)) if match else -1
        if match is None:
            print(shell.stdout + shell.stderr)
        check(
            count >= READINGS,
            f"at least {READINGS} readings stored and rated for {DEVICE} since the simulator started",
            f"found {count}",
        )

        # 5. Ctrl-C stops everything in time.
        os.killpg(pgid, signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
            stopped = True
        except subprocess.TimeoutExpired:
            stopped = False
        deadline = time.monotonic() + 3
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        check(
            stopped and not group_alive(pgid),
            f"SIGINT stops 'make run' and all its processes within {STOP_TIMEOUT_S:.0f} s",
        )
        out.join(5)
        check("stopped" in out.lines, "the server reported a clean stop ('stopped')")
    finally:
        kill_group(pgid)
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def main() -> int:
    if not Path(PYTHON).exists():
        print(f"FAIL: {PYTHON} not found; run 'make test' or 'make run' once first")
        return 1
    var_dir = tempfile.mkdtemp(prefix="submeter-smoke-")
    try:
        run_smoke(free_port(), var_dir)
    except Exception as exc:  # report, clean up, fail
        check(False, "smoke run raised no unexpected error", repr(exc))
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    if failures:
        print(f"smoke: FAIL ({len(failures)} check(s) failed)", flush=True)
        return 1
    print("smoke: PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
