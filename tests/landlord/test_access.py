"""Every page, API route and browser socket denies the wrong persona with a 404.

Persona names: landlord_a / landlord_b (staff of two landlords), tenant_a1
(prepaid tenant of A), tenant_a2 (postpaid tenant of A), tenant_b1, admin,
anonymous.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from payments.models import Payment
from payments.services import payment_create
from tests.wsutil import browser_communicator


def _user(personas, name):
    if name == "anonymous":
        return None
    if name == "admin":
        return personas.admin
    return {
        "landlord_a": personas.a.staff,
        "landlord_b": personas.b.staff,
        "tenant_a1": personas.a.prepaid_tenant,
        "tenant_a2": personas.a.postpaid_tenant,
        "tenant_b1": personas.b.prepaid_tenant,
    }[name]


def _client(personas, name) -> Client:
    client = Client()
    user = _user(personas, name)
    if user is not None:
        client.force_login(user)
    return client


ALL = ["anonymous", "admin", "landlord_a", "landlord_b", "tenant_a1", "tenant_a2", "tenant_b1"]


def _expect(allowed: set[str], persona: str, ok: int = 200) -> int:
    if persona in allowed:
        return ok
    return 302 if persona == "anonymous" else 404


@pytest.mark.parametrize("persona", ALL)
def test_tenant_home(personas, persona):
    url = reverse("tenant:home", args=[personas.a.prepaid_tenancy.pk])
    resp = _client(personas, persona).get(url)
    assert resp.status_code == _expect({"tenant_a1"}, persona)
    if resp.status_code == 302:
        assert resp["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("persona", ALL)
def test_landlord_unit_detail(personas, persona):
    url = reverse("landlord:unit", args=[personas.a.prepaid.pk])
    resp = _client(personas, persona).get(url)
    assert resp.status_code == _expect({"landlord_a"}, persona)


@pytest.mark.parametrize("persona", ALL)
def test_landlord_unit_list_shows_only_own_units(personas, persona):
    resp = _client(personas, persona).get(reverse("landlord:units"))
    assert resp.status_code == _expect({"landlord_a", "landlord_b"}, persona)
    if persona == "landlord_a":
        body = resp.content.decode()
        assert "House a" in body and "House b" not in body


@pytest.mark.parametrize("persona", ALL)
def test_topup_post(personas, persona):
    url = reverse("payments:topup", args=[personas.a.prepaid_tenancy.pk])
    resp = _client(personas, persona).post(url, {"amount": "10"})
    assert resp.status_code == _expect({"tenant_a1"}, persona, ok=302)
    expected_payments = 1 if persona == "tenant_a1" else 0
    assert Payment.objects.count() == expected_payments


@pytest.mark.parametrize("persona", ALL)
def test_payment_pages(personas, persona, django_capture_on_commit_callbacks):
    payment = payment_create(
        tenancy=personas.a.prepaid_tenancy, amount_minor=1000, provider="dev", created_by_id=None
    )
    client = _client(personas, persona)
    for name in ("payments:status", "payments:dev_checkout"):
        resp = client.get(reverse(name, args=[payment.uuid]))
        assert resp.status_code == _expect({"tenant_a1"}, persona), name
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.post(
            reverse("payments:dev_checkout", args=[payment.uuid]), {"outcome": "succeeded"}
        )
    assert resp.status_code == _expect({"tenant_a1"}, persona, ok=302)
    payment.refresh_from_db()
    assert (payment.status == "succeeded") == (persona == "tenant_a1")


@pytest.mark.parametrize("persona", ALL)
def test_api_tenancy(personas, persona):
    url = reverse("api-tenancy", args=[personas.a.prepaid_tenancy.pk])
    resp = _client(personas, persona).get(url)
    expected = 200 if persona == "tenant_a1" else (403 if persona == "anonymous" else 404)
    assert resp.status_code == expected


@pytest.mark.parametrize("persona", ALL)
def test_api_units(personas, persona):
    resp = _client(personas, persona).get(reverse("api-units"))
    allowed = {"landlord_a", "landlord_b"}
    expected = 200 if persona in allowed else (403 if persona == "anonymous" else 404)
    assert resp.status_code == expected
    if persona == "landlord_b":
        assert {u["property"] for u in resp.json()} == {"House b"}


def test_admin_is_for_staff_only(personas):
    assert _client(personas, "admin").get("/admin/").status_code == 200
    assert _client(personas, "landlord_a").get("/admin/").status_code == 302
    assert _client(personas, "tenant_a1").get("/admin/").status_code == 302


def test_home_routes_each_persona(personas):
    assert _client(personas, "anonymous").get("/")["Location"] == reverse("login")
    assert _client(personas, "landlord_a").get("/")["Location"] == reverse("landlord:units")
    assert _client(personas, "tenant_a1").get("/")["Location"] == reverse(
        "tenant:home", args=[personas.a.prepaid_tenancy.pk]
    )


def test_login_form_errors_are_clear(personas):
    resp = Client().post(reverse("login"), {"username": "tenant_a1", "password": "nope"})
    assert resp.status_code == 200
    assert "did not match" in resp.content.decode()


# --- browser sockets ---------------------------------------------------------


@database_sync_to_async
def _session(personas, name):
    client = _client(personas, name)
    return client.cookies["sessionid"].value if "sessionid" in client.cookies else None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("persona", ALL)
async def test_tenancy_socket(tpersonas, persona):
    sid = await _session(tpersonas, persona)
    comm = browser_communicator(f"/ws/live/tenancy/{tpersonas.a.prepaid_tenancy.pk}/", sid)
    connected, code = await comm.connect()
    if persona == "tenant_a1":
        assert connected
        snapshot = await comm.receive_from(timeout=5)
        assert 'id="tenancy-panel"' in snapshot
        await comm.disconnect()
    else:
        assert (connected, code) == (False, 4404)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("persona", ALL)
async def test_landlord_socket(tpersonas, persona):
    sid = await _session(tpersonas, persona)
    comm = browser_communicator("/ws/live/landlord/", sid)
    connected, code = await comm.connect()
    if persona in ("landlord_a", "landlord_b"):
        assert connected
        snapshot = await comm.receive_from(timeout=5)
        own = tpersonas.a if persona == "landlord_a" else tpersonas.b
        other = tpersonas.b if persona == "landlord_a" else tpersonas.a
        assert f'id="unit-{own.prepaid.pk}"' in snapshot
        assert f'id="unit-{other.prepaid.pk}"' not in snapshot
        await comm.disconnect()
    else:
        assert (connected, code) == (False, 4404)


@pytest.mark.django_db(transaction=True)
async def test_socket_from_a_foreign_origin_is_refused(tpersonas):
    sid = await _session(tpersonas, "tenant_a1")
    comm = browser_communicator(
        f"/ws/live/tenancy/{tpersonas.a.prepaid_tenancy.pk}/", sid, origin="https://evil.example"
    )
    connected, _ = await comm.connect()
    assert not connected


def test_user_model_is_default():
    # Personas rely on the stock user model; a change here needs new personas.
    assert get_user_model()._meta.label == "auth.User"
