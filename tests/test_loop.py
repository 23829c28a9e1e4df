"""The product's central loop, end to end, on the configured channel layer.

Device readings → pricing → prepaid debit → tenant and landlord screens update
live → low-credit alert → at zero the relay is cut and acknowledged → a top-up
through the development provider (the webhook code path) credits the balance
→ the relay comes back on. With REDIS_URL set this runs on Redis.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

from payments.models import Payment, PaymentEvent
from tests.wsutil import FakeDevice, browser_communicator, device_communicator

from .meters.test_device_socket import _balance

pytestmark = pytest.mark.django_db(transaction=True)


class Screen:
    """A browser socket: remembers the latest HTML it was pushed."""

    def __init__(self, comm):
        self.comm = comm
        self.frames: list[str] = []

    async def wait_for(self, *needles: str, timeout: float = 10) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for frame in reversed(self.frames[-3:]):
                if all(n in frame for n in needles):
                    return frame
            if loop.time() > deadline:
                raise AssertionError(f"screen never showed {needles}; last: {self.frames[-1:]}")
            if not await self.comm.receive_nothing(timeout=0.05, interval=0.01):
                self.frames.append(await self.comm.receive_from(timeout=5))


def _logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@sync_to_async
def _top_up(client: Client, tenancy_id: int, amount: str) -> Payment:
    resp = client.post(reverse("payments:topup", args=[tenancy_id]), {"amount": amount})
    assert resp.status_code == 302, resp.content[:500]
    checkout = resp["Location"]
    resp = client.post(checkout, {"outcome": "succeeded"})
    assert resp.status_code == 302
    status = client.get(resp["Location"])
    assert "Paid" in status.content.decode()
    return Payment.objects.latest("created_at")


async def test_prepaid_loop_end_to_end(tpersonas):
    world = tpersonas.a
    tenant_client = await sync_to_async(_logged_in)(world.prepaid_tenant)
    landlord_client = await sync_to_async(_logged_in)(world.staff)
    tenant_screen = Screen(
        browser_communicator(
            f"/ws/live/tenancy/{world.prepaid_tenancy.pk}/",
            tenant_client.cookies["sessionid"].value,
        )
    )
    landlord_screen = Screen(
        browser_communicator("/ws/live/landlord/", landlord_client.cookies["sessionid"].value)
    )
    assert (await tenant_screen.comm.connect())[0]
    assert (await landlord_screen.comm.connect())[0]
    await tenant_screen.wait_for('id="tenancy-panel"', "£0.00")
    unit_card = f'id="unit-{world.prepaid.pk}"'
    await landlord_screen.wait_for(unit_card)

    # given: £1.00 of credit, paid through the development provider
    payment = await _top_up(tenant_client, world.prepaid_tenancy.pk, "1.00")
    assert payment.status == Payment.Status.SUCCEEDED
    await tenant_screen.wait_for("£1.00")

    # when: the meter reports 2 kWh at 30p
    dev = FakeDevice(device_communicator(world.prepaid_device.headers))
    assert (await dev.comm.connect())[0]
    await dev.boot()
    await dev.readings((1, 0), (2, 1000), (3, 2000))

    # then: both screens show 40p live, and the tenant sees the low-credit alert
    await tenant_screen.wait_for("£0.40", "Low credit")
    await landlord_screen.wait_for(unit_card, "£0.40", "low")

    # when: two more kWh take the balance below zero
    await dev.readings((4, 3000), (5, 4000))
    assert await _balance(world.prepaid_tenancy) == -20

    # then: the relay is commanded off, the device acknowledges, screens show it
    await dev.wait_for_relay("off")
    await tenant_screen.wait_for("supply off", "credit has run out")
    await landlord_screen.wait_for(unit_card, "supply off")

    # when: the tenant tops up £5 through the same path a webhook uses
    payment = await _top_up(tenant_client, world.prepaid_tenancy.pk, "5")
    assert await sync_to_async(PaymentEvent.objects.filter(processed_at__isnull=False).count)() == 2

    # then: supply comes back on by itself and the screens say so
    await dev.wait_for_relay("on")
    await tenant_screen.wait_for("supply on", "£4.80")
    await landlord_screen.wait_for(unit_card, "supply on", "£4.80")
    assert await _balance(world.prepaid_tenancy) == 480

    await dev.comm.disconnect()
    await tenant_screen.comm.disconnect()
    await landlord_screen.comm.disconnect()
