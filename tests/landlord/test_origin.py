"""Browser sockets open only from this site's own pages: scheme, host and port all count."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application


@database_sync_to_async
def _session(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def _opens(path: str, sid: str, *, origin: str | None, host: str, **scope) -> bool:
    headers = [(b"host", host.encode()), (b"cookie", f"sessionid={sid}".encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    comm = WebsocketCommunicator(application, path, headers=headers)
    comm.scope.update(scope)
    connected, _ = await comm.connect()
    await comm.disconnect()
    return connected


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("origin", "host", "scheme", "opens"),
    [
        ("http://testserver", "testserver", "ws", True),
        ("https://testserver", "testserver", "wss", True),
        ("http://testserver:8000", "testserver:8000", "ws", True),
        ("https://testserver", "testserver", "ws", False),  # a secure page, a plain socket
        ("http://testserver", "testserver", "wss", False),  # a plain page, a secure socket
        ("http://testserver:8080", "testserver", "ws", False),  # another port
        ("http://testserver", "testserver:8080", "ws", False),
        ("http://evil.example", "testserver", "ws", False),
        ("http://evil.example", "evil.example", "ws", False),  # not an allowed host
        ("null", "testserver", "ws", False),
        (None, "testserver", "ws", False),
    ],
)
async def test_origin_must_be_the_sockets_own(tpersonas, origin, host, scheme, opens):
    sid = await _session(tpersonas.a.staff)
    assert await _opens("/ws/live/landlord/", sid, origin=origin, host=host, scheme=scheme) is opens


@pytest.mark.django_db(transaction=True)
async def test_behind_a_tls_proxy_the_forwarded_scheme_counts(tpersonas, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    sid = await _session(tpersonas.a.staff)

    async def opens(origin: str, proto: str) -> bool:
        headers = [
            (b"host", b"testserver"),
            (b"cookie", f"sessionid={sid}".encode()),
            (b"origin", origin.encode()),
            (b"x-forwarded-proto", proto.encode()),
        ]
        comm = WebsocketCommunicator(application, "/ws/live/landlord/", headers=headers)
        connected, _ = await comm.connect()
        await comm.disconnect()
        return connected

    assert await opens("https://testserver", "https")
    assert not await opens("http://testserver", "https")
    assert not await opens("https://testserver", "http")


@pytest.mark.django_db(transaction=True)
async def test_trusted_origins_are_matched_with_their_scheme(tpersonas, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com", "https://*.tenants.example"]
    sid = await _session(tpersonas.a.staff)
    path = "/ws/live/landlord/"
    assert await _opens(path, sid, origin="https://app.example.com", host="testserver")
    assert not await _opens(path, sid, origin="http://app.example.com", host="testserver")
    assert not await _opens(path, sid, origin="https://app.example.com:444", host="testserver")
    assert await _opens(path, sid, origin="https://a.tenants.example", host="testserver")
    assert not await _opens(path, sid, origin="http://a.tenants.example", host="testserver")
