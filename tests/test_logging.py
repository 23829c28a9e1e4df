"""A Shelly's secret (part of the address it connects to) never reaches a log line."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websockets
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.utils.log import configure_logging

from config.asgi import application
from meters.models import Device, Protocol
from tests.factories import make_device
from tests.test_scale_out import ROOT, _database_env, _free_port

IDENT = "shellyplus1pm-a8032ab12345"


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The text every stream handler would write, after its filters ran."""
    lines: list[str] = []

    def emit(self: logging.StreamHandler[Any], record: logging.LogRecord) -> None:
        lines.append(self.format(record))

    monkeypatch.setattr(logging.StreamHandler, "emit", emit)
    return lines


def _shelly(world: Any) -> Any:
    creds = make_device(world.prepaid, IDENT)
    Device.objects.filter(pk=creds.device.pk).update(protocol=Protocol.SHELLY)
    return creds


def _uvicorn_lines(path: str) -> None:
    """What uvicorn logs for a WebSocket handshake, in its own words
    (uvicorn.protocols.websockets), and for an exception in the application."""
    from uvicorn.protocols.utils import get_path_with_query_string

    scope: Any = {"path": path, "query_string": b"x=1"}
    server = logging.getLogger("uvicorn.error")
    server.info(
        '%s - "WebSocket %s" [accepted]', "10.0.0.9:5123", get_path_with_query_string(scope)
    )
    server.info('%s - "WebSocket %s" 403', "10.0.0.9:5123", get_path_with_query_string(scope))
    try:
        raise ValueError(f"No route found for path {path.lstrip('/')!r}.")
    except ValueError:
        server.exception("Exception in ASGI application\n")


@pytest.mark.django_db(transaction=True)
async def test_connecting_a_shelly_logs_no_secret(tpersonas, written):
    creds = await database_sync_to_async(_shelly)(tpersonas.a)
    paths = [
        f"/ws/shelly/{IDENT}/{creds.secret}",
        f"/ws/shelly/{IDENT}/{creds.secret}x",
        f"/ws/shelly/{IDENT}/{creds.secret}/extra",
    ]
    for path in paths:
        comm = WebsocketCommunicator(application, path)
        await comm.connect(timeout=5)
        await comm.disconnect()
        _uvicorn_lines(path)
    logging.getLogger("django.request").warning("Not Found: %s", paths[0])
    text = "\n".join(written)
    assert f'"WebSocket /ws/shelly/{IDENT}/[redacted]" [accepted]' in text
    assert f"No route found for path 'ws/shelly/{IDENT}/[redacted]'" in text
    assert f"Not Found: /ws/shelly/{IDENT}/[redacted]" in text
    assert creds.secret not in text


def test_a_shelly_path_over_plain_http_logs_no_secret(client, written):
    response = client.get(f"/ws/shelly/{IDENT}/Zr8vQ4nE1pXy7LkT2wHs9cJd")
    assert response.status_code == 404
    text = "\n".join(written)
    assert f"/ws/shelly/{IDENT}/[redacted]" in text
    assert "Zr8vQ4nE1pXy7LkT2wHs9cJd" not in text


@pytest.fixture
def uvicorn_log_config_after_django() -> Iterator[None]:
    """uvicorn's own log config applied after Django's, as ``manage.py serve``
    does when it builds its uvicorn.Config; Django's is restored afterwards."""
    import uvicorn

    uvicorn.Config("config.asgi:application", log_level="info")
    yield
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = [], True
        logger.setLevel(logging.NOTSET)
    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)


def test_uvicorns_own_handlers_get_redacted_records(uvicorn_log_config_after_django, written):
    _uvicorn_lines(f"/ws/shelly/{IDENT}/Zr8vQ4nE1pXy7LkT2wHs9cJd")
    text = "\n".join(written)
    assert f"/ws/shelly/{IDENT}/[redacted]" in text
    assert "Zr8vQ4nE1pXy7LkT2wHs9cJd" not in text


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("launch", ["uvicorn", "serve"])
def test_a_real_server_logs_no_shelly_secret(tpersonas, tmp_path, launch):
    """The server as it runs: production's ``uvicorn config.asgi:application``
    (handshakes logged at INFO) and ``make run``'s ``manage.py serve``."""
    creds = _shelly(tpersonas.a)
    port = _free_port()
    command = {
        "uvicorn": [
            *("-m", "uvicorn", "config.asgi:application", "--lifespan", "off"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "info"),
        ],
        "serve": [
            *("manage.py", "serve", "--no-simulator", "--no-consumer"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
    }[launch]
    env = {
        **os.environ,
        **_database_env(),
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, *command], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            base = f"127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(f"http://{base}/healthz", timeout=2).ok:
                        break
                except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow to start
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            path = f"/ws/shelly/{IDENT}/{creds.secret}"
            assert requests.get(f"http://{base}{path}", timeout=10).status_code == 404

            async def connect() -> None:
                async with websockets.connect(f"ws://{base}{path}") as ws:
                    await ws.close()
                with pytest.raises(websockets.InvalidStatus):
                    async with websockets.connect(f"ws://{base}{path}/extra"):
                        pass

            asyncio.run(connect())
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    text = log.read_text()
    assert f"Not Found: /ws/shelly/{IDENT}/[redacted]" in text, text
    if launch == "uvicorn":
        assert f'"WebSocket /ws/shelly/{IDENT}/[redacted]" [accepted]' in text, text
        assert f'"WebSocket /ws/shelly/{IDENT}/[redacted]" 403' in text, text
    assert creds.secret not in text, text
