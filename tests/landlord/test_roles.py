"""Owners and staff of a landlord (docs/roles.md): staff run the day-to-day work; refunds,
the payment account, roles and forcing a supply off are for owners."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.test import Client
from django.urls import reverse

from config.live import landlord_group
from landlord.models import AuditEvent, Membership
from payments.models import Refund
from payments.providers import DevelopmentProvider, get_provider
from payments.services import payment_create
from tests.wsutil import browser_communicator

Action = Membership.Action


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("action", list(Action))
def test_owners_may_everything_staff_the_day_to_day_and_other_roles_nothing(action):
    assert Membership(role=Membership.Role.OWNER).may(action)
    staff_may = action in {
        Action.VIEW,
        Action.SUPPLY_ON,
        Action.REVIEW,
        Action.DEVICES,
        Action.TENANTS,
    }
    assert Membership(role=Membership.Role.STAFF).may(action) is staff_may
    assert not Membership(role="guest").may(action)


def test_staff_cannot_force_the_supply_off_but_can_force_it_on(everyone):
    unit = everyone.a.prepaid
    client = _client(everyone.a_staff)
    url = reverse("landlord:override", args=[unit.pk])
    resp = client.post(url, {"state": "off", "reason": "tenant asked"})
    assert resp.status_code == 403
    assert "Only an owner" in resp.content.decode()
    unit.refresh_from_db()
    assert unit.override_state == ""
    assert not AuditEvent.objects.filter(action="supply.override.off").exists()
    assert client.post(url, {"state": "on", "reason": "repair done"}).status_code == 302
    unit.refresh_from_db()
    assert unit.override_state == "on"
    # the owner may do both
    assert (
        _client(everyone.a.staff).post(url, {"state": "off", "reason": "unsafe"}).status_code == 302
    )


def test_staff_cannot_refund(everyone, django_capture_on_commit_callbacks):
    provider = get_provider()
    assert isinstance(provider, DevelopmentProvider)
    payment = payment_create(
        tenancy=everyone.a.prepaid_tenancy,
        amount_minor=1000,
        provider=provider.name,
        created_by_id=None,
    )
    with django_capture_on_commit_callbacks(execute=True):
        provider.complete(payment=payment, outcome="succeeded")
    url = reverse("payments:refund", args=[payment.uuid])
    staff = _client(everyone.a_staff)
    assert staff.get(url).status_code == 403
    assert staff.post(url, {"amount": "5", "reason": "goodwill"}).status_code == 403
    assert not Refund.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        resp = _client(everyone.a.staff).post(url, {"amount": "5", "reason": "goodwill"})
    assert resp.status_code == 302
    assert Refund.objects.get().created_by_id == everyone.a.staff.pk


def test_staff_cannot_set_up_the_payment_account(everyone):
    staff = _client(everyone.a_staff)
    assert staff.get(reverse("payments:connect")).status_code == 403
    assert staff.post(reverse("payments:connect_start")).status_code == 403


def test_staff_pages_offer_only_what_staff_may_do(everyone):
    staff = _client(everyone.a_staff)
    owner = _client(everyone.a.staff)
    unit_url = reverse("landlord:unit", args=[everyone.a.prepaid.pk])
    assert 'value="off"' not in staff.get(unit_url).content.decode()
    assert 'value="off"' in owner.get(unit_url).content.decode()
    connect = reverse("payments:connect")
    for url in (reverse("landlord:units"), reverse("payments:landlord_payments")):
        assert connect not in staff.get(url).content.decode()
        assert connect in owner.get(url).content.decode()


def test_staff_do_the_day_to_day(everyone):
    staff = _client(everyone.a_staff)
    for url in (
        reverse("landlord:units"),
        reverse("landlord:unit", args=[everyone.a.prepaid.pk]),
        reverse("landlord:flagged"),
        reverse("payments:landlord_payments"),
        reverse("api-units"),
    ):
        assert staff.get(url).status_code == 200, url


@database_sync_to_async
def _session(user) -> str:
    return _client(user).cookies["sessionid"].value


@pytest.mark.django_db(transaction=True)
async def test_a_landlord_wide_change_refreshes_every_row(teveryone):
    comm = browser_communicator("/ws/live/landlord/", await _session(teveryone.a_staff))
    assert (await comm.connect())[0]
    await comm.receive_from(timeout=5)  # the snapshot
    # e.g. the payment account changed: no single unit
    await get_channel_layer().group_send(
        landlord_group(teveryone.a.landlord.pk), {"type": "unit.changed", "unit_id": None}
    )
    rows = await comm.receive_from(timeout=5)
    assert f'id="unit-{teveryone.a.prepaid.pk}"' in rows
    await comm.disconnect()
