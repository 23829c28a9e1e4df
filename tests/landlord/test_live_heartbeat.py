"""The tenant's live socket: a snapshot on connect, then a heartbeat the page can count on."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import Client

from landlord.consumers import HEARTBEAT
from tests.wsutil import browser_communicator


def _session_for(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.mark.django_db(transaction=True)
async def test_the_live_socket_sends_a_heartbeat_after_the_snapshot(tpersonas, monkeypatch):
    monkeypatch.setitem(settings.SUBMETER, "LIVE_HEARTBEAT_SECONDS", 0.2)
    world = tpersonas.a
    session = await database_sync_to_async(_session_for)(world.prepaid_tenant)
    page = browser_communicator(f"/ws/live/tenancy/{world.prepaid_tenancy.pk}/", session)
    assert (await page.connect())[0]
    snapshot = await page.receive_from(timeout=5)
    assert 'id="tenancy-panel"' in snapshot and 'data-testid="supply-line"' in snapshot
    assert await page.receive_from(timeout=2) == HEARTBEAT
    assert await page.receive_from(timeout=2) == HEARTBEAT
    await page.disconnect()
