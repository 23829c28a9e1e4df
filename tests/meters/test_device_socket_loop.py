"""The device socket's command loop, on its own."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from uvicorn.protocols.utils import ClientDisconnected

from meters.sockets import base as socket_base
from meters.sockets.base import DeviceSocket, ProtocolAdapter


class _GoneAdapter(ProtocolAdapter):
    """A device whose socket the server finds closed when it sends."""

    sent = 0

    async def send_relay(self, command: object) -> None:
        type(self).sent += 1
        raise ClientDisconnected


# The loop's database calls are patched out, but database_sync_to_async still
# checks its thread's connection, which an earlier test may have left open.
@pytest.mark.django_db
async def test_the_command_loop_ends_quietly_when_the_device_has_gone(monkeypatch, caplog):
    command = SimpleNamespace(pk=1, state="off", generation=3, attempts=1)
    monkeypatch.setattr(socket_base, "relay_command_due", lambda *, device_id: command)
    monkeypatch.setattr(socket_base, "relay_command_mark_sent", lambda *, command_id: command)
    socket = DeviceSocket(adapter=_GoneAdapter)
    socket.device_id = 7

    # Ends at once: no error logged, no retry a second later.
    await asyncio.wait_for(socket._command_loop(), timeout=0.5)

    assert _GoneAdapter.sent == 1
    assert "relay command loop error" not in caplog.text
