"""The landlord's home is live: the socket's snapshot carries what needs attention,
and a unit's change sends its row and then a fresh summary."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from config.live import unit_changed
from payments.models import Payment
from tests.wsutil import browser_communicator

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def _session(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@database_sync_to_async
def _fail_a_payment(world) -> None:
    Payment.objects.create(
        landlord=world.landlord,
        tenancy=world.prepaid_tenancy,
        amount_minor=1500,
        currency="GBP",
        provider="dev",
        status=Payment.Status.FAILED,
    )
    unit_changed(world.prepaid)  # as the payment services do, on commit


async def _until(comm, *needles: str) -> str:
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        left = max(deadline - asyncio.get_running_loop().time(), 0.1)
        html = await comm.receive_from(timeout=left)
        if all(n in html for n in needles):
            return html


async def test_summary_follows_a_change(tpersonas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "LIVE_SUMMARY_SECONDS": 0}
    world = tpersonas.a
    page = browser_communicator("/ws/live/landlord/", await _session(world.staff))
    assert (await page.connect())[0]
    snapshot = await page.receive_from(timeout=5)
    assert f'id="unit-{world.prepaid.pk}"' in snapshot and 'id="home-summary"' in snapshot
    assert "Nothing needs attention" in snapshot

    await _fail_a_payment(world)

    await _until(page, f'id="unit-{world.prepaid.pk}"')
    summary = await _until(page, 'id="home-summary"')
    assert 'data-kind="payment"' in summary and "payment failed" in summary
    await page.disconnect()


async def test_summaries_wait_their_turn(tpersonas, settings):
    # given: a summary at most every minute, and the snapshot just sent
    settings.SUBMETER = {**settings.SUBMETER, "LIVE_SUMMARY_SECONDS": 60}
    world = tpersonas.a
    page = browser_communicator("/ws/live/landlord/", await _session(world.staff))
    assert (await page.connect())[0]
    await page.receive_from(timeout=5)
    # when: a burst of changes
    for _ in range(3):
        await database_sync_to_async(unit_changed)(world.prepaid)
    # then: each row at once, and the summary held back (one, pending)
    for _ in range(3):
        html = await page.receive_from(timeout=5)
        assert f'id="unit-{world.prepaid.pk}"' in html and 'id="home-summary"' not in html
    assert await page.receive_nothing(timeout=0.2)
    await page.disconnect()  # the pending summary is cancelled with the socket
