"""Every route and every socket, for every persona: generated from the URL resolver and
the WebSocket router, so a new route without a line in the tables below fails the suite.

Personas (tests/conftest.py ``PERSONA_NAMES``): anonymous; landlord_a (an owner of A);
landlord_a_staff (staff of A); landlord_b (an owner of B); tenant_a1 (A's prepaid
unit, running); former_tenant_a (A's prepaid unit, ended yesterday); tenant_b1;
admin (a superuser, not a member of any landlord).

The URLs carry landlord A's objects. A tenancy's objects are the persona's own
when the persona is former_tenant_a (their ended tenancy), else tenant_a1's.
Another landlord's or tenant's object is a 404, never a 403; a 403 is only for a
member of A whose role does not allow the action (docs/roles.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from config import asgi
from disputes.models import Dispute
from disputes.services import DisputeItem, dispute_open
from landlord.models import (
    Invitation,
    MemberInvitation,
    Membership,
    ModeSwitchSchedule,
    PaymentPlanRequest,
    Tenancy,
)
from landlord.people import invitation_token
from landlord.staff import member_invitation_token
from meters.models import Interval, Meter
from meters.readings import ReadingInput, readings_record
from payments.models import Dispute as Chargeback
from payments.models import Invoice, Payment, SavedPaymentMethod
from payments.providers import DevelopmentProvider, get_provider
from payments.services import payment_create
from tests.conftest import PERSONA_NAMES, Everyone

ANON, OWNER, STAFF, OTHER = "anonymous", "landlord_a", "landlord_a_staff", "landlord_b"
TENANT, FORMER, OTHER_TENANT, ADMIN = "tenant_a1", "former_tenant_a", "tenant_b1", "admin"
LOGIN = "login"  # a redirect to the sign-in page


def only(allowed: dict[str, int | str], rest: int | str = 404, anonymous: int | str = LOGIN):
    """The expected outcome for every persona: ``allowed`` as given, the others ``rest``."""
    table = {name: rest for name in PERSONA_NAMES}
    table[ANON] = anonymous
    table.update(allowed)
    return table


def everyone_gets(outcome: int | str) -> dict[str, int | str]:
    return dict.fromkeys(PERSONA_NAMES, outcome)


@dataclass
class Case:
    method: str
    expected: dict[str, int | str]
    data: dict[str, str] = field(default_factory=dict)


# --- the objects in the URLs ------------------------------------------------


@dataclass
class World:
    people: Everyone
    persona: str
    tenancy: Tenancy  # the tenancy whose objects this persona's URLs carry
    objects: dict[str, Any]


def _paid(tenancy: Tenancy, *, reference: str = "") -> Payment:
    provider = get_provider()
    assert isinstance(provider, DevelopmentProvider)
    payment = payment_create(
        tenancy=tenancy,
        amount_minor=1000,
        provider=provider.name,
        created_by_id=None,
        purpose=Payment.Purpose.BILL if reference else Payment.Purpose.TOPUP,
        reference=reference,
    )
    return payment


def _invoice(tenancy: Tenancy) -> Invoice:
    return Invoice.objects.create(
        landlord=tenancy.landlord,
        tenancy=tenancy,
        period_start=date(2026, 1, 1),
        period_end=date(2026, 2, 1),
        currency="GBP",
        total_minor=1000,
    )


def _method(tenancy: Tenancy) -> SavedPaymentMethod:
    return SavedPaymentMethod.objects.create(
        landlord=tenancy.landlord,
        tenancy=tenancy,
        provider="dev",
        provider_ref=f"pm_dev_{tenancy.pk}",
        last4="4242",
    )


def _held_interval(people: Everyone) -> Interval:
    base = datetime(2026, 1, 14, 10, 0, tzinfo=UTC)
    readings_record(
        device_id=people.a.prepaid_device.device.pk,
        readings=[
            ReadingInput(seq=1, taken_at=base, register_wh=0),
            ReadingInput(seq=2, taken_at=base + timedelta(hours=7), register_wh=3000),
        ],
    )
    return Interval.objects.get(kind=Interval.Kind.GAP)


def _dispute(tenancy: Tenancy, invoice: Invoice) -> Dispute:
    photo = SimpleUploadedFile("meter.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    return dispute_open(
        tenancy=tenancy,
        actor=tenancy.tenant,
        item=DisputeItem(subject=Dispute.Subject.INVOICE, invoice=invoice),
        category=Dispute.Category.WRONG_READING,
        message="The reading is too high.",
        files=[photo],
    )


def _chargeback(payment: Payment) -> Chargeback:
    return Chargeback.objects.create(
        landlord=payment.landlord,
        payment=payment,
        provider_ref=f"dp_{payment.uuid.hex}",
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        status="needs_response",
    )


def build_world(people: Everyone, persona: str) -> World:
    tenancy = people.former_tenancy if persona == FORMER else people.a.prepaid_tenancy
    invoice = _invoice(tenancy)
    reference = f"invoice:{invoice.number}" if persona == FORMER else ""
    payment = _paid(tenancy, reference=reference)
    dispute = _dispute(tenancy, invoice)
    return World(
        people=people,
        persona=persona,
        tenancy=tenancy,
        objects={
            "invoice": invoice,
            "payment": payment,
            "method": _method(tenancy),
            "dispute": dispute,
            "attachment": dispute.attachments.get(),
            "chargeback": _chargeback(payment),
        },
    )


def _kwargs(world: World, pattern: URLPattern) -> dict[str, Any]:
    """Each URL keyword filled with landlord A's object of that kind."""
    makers: dict[str, Callable[[], Any]] = {
        "tenancy_id": lambda: world.tenancy.pk,
        "unit_id": lambda: world.people.a.prepaid.pk,
        "invoice_id": lambda: world.objects["invoice"].pk,
        "payment_uuid": lambda: world.objects["payment"].uuid,
        "method_id": lambda: world.objects["method"].pk,
        "interval_id": lambda: _held_interval(world.people).pk,
        "device_id": lambda: world.people.a.prepaid_device.device.pk,
        "meter_id": lambda: Meter.objects.get(device=world.people.a.prepaid_device.device).pk,
        "token": lambda: invitation_token(
            Invitation.objects.create(
                landlord=world.people.a.landlord,
                unit=world.people.a.prepaid,
                email="invited@example.com",
                move_in=date(2030, 1, 1),
            )
        ),
        "team_token": lambda: member_invitation_token(
            MemberInvitation.objects.create(
                landlord=world.people.a.landlord, email="joiner@example.com"
            )
        ),
        "invitation_id": lambda: (
            MemberInvitation.objects.create(
                landlord=world.people.a.landlord, email="joiner@example.com"
            ).pk
        ),
        # A's owner, its only one: removing them is refused on the page.
        "membership_id": lambda: Membership.objects.get(user_id=world.people.a.staff.pk).pk,
        "switch_id": lambda: (
            ModeSwitchSchedule.objects.get_or_create(
                unit=world.people.a.prepaid,
                status=ModeSwitchSchedule.Status.PENDING,
                defaults={
                    "landlord": world.people.a.landlord,
                    "mode": "postpaid",
                    "at": timezone.now() + timedelta(days=1),
                },
            )[0].pk
        ),
        "request_id": lambda: (
            PaymentPlanRequest.objects.get_or_create(
                tenancy=world.people.a.prepaid_tenancy,
                status=PaymentPlanRequest.Status.OPEN,
                defaults={"landlord": world.people.a.landlord, "message": "Can we talk?"},
            )[0].pk
        ),
        "property_id": lambda: world.people.a.prop.pk,
        "tariff_id": lambda: world.people.a.tariff.pk,
        "dispute_id": lambda: world.objects["dispute"].pk,
        "attachment_id": lambda: world.objects["attachment"].pk,
        "chargeback_id": lambda: world.objects["chargeback"].pk,
        "uidb64": lambda: "MQ",
    }
    return {name: makers[name]() for name in pattern.pattern.converters}


# --- the tables ---------------------------------------------------------------

LANDLORD_PAGE = only({OWNER: 200, STAFF: 200, OTHER: 200})  # each landlord sees their own
A_OBJECT_PAGE = only({OWNER: 200, STAFF: 200})
SETUP_PAGE = only({OWNER: 200, STAFF: 403, OTHER: 200})  # setting up is for owners
A_SETUP_PAGE = only({OWNER: 200, STAFF: 403})
PROPERTY_FORM = {
    "name": "Annex",
    "timezone": "Europe/London",
    "currency": "GBP",
    "cutoff_days": "1",
    "cutoff_start": "09:00",
    "cutoff_end": "15:00",
    "cutoff_notice_minutes": "60",
}
MEMBERS_200 = {OWNER: 200, STAFF: 200}
BILL_READERS: dict[str, int | str] = {TENANT: 200, FORMER: 200, OWNER: 200, STAFF: 200, ADMIN: 200}


def PARTY_403(*personas: str) -> dict[str, int | str]:
    return dict.fromkeys(personas, 403)


HTTP: dict[str, list[Case]] = {
    "home": [Case("get", {**everyone_gets(302), ANON: LOGIN})],  # the admin: to the admin
    "healthz": [Case("get", everyone_gets(200))],
    "login": [Case("get", everyone_gets(200))],
    "logout": [Case("post", everyone_gets(LOGIN))],
    "admin-login": [Case("get", {**everyone_gets(200), ADMIN: 302})],
    "api-schema": [Case("get", everyone_gets(200))],
    # The installable app's files: public, nobody's data in them.
    "manifest": [Case("get", everyone_gets(200))],
    "service_worker": [Case("get", everyone_gets(200))],
    "offline": [Case("get", everyone_gets(200))],
    # Live pages and the money a tenant moves: the running tenancy only.
    "tenant:home": [Case("get", only({TENANT: 200, FORMER: 200}))],  # former: history only
    "tenant:history": [Case("get", only({TENANT: 200, FORMER: 200}))],
    "tenant:topup_preview": [Case("get", only({TENANT: 200}))],
    "tenant:usage": [Case("get", only({TENANT: 200, FORMER: 200}))],
    "tenant:usage_data": [Case("get", only({TENANT: 200, FORMER: 200}))],
    "tenant:settings": [Case("get", only({TENANT: 200}))],
    "tenant:cant_pay": [Case("get", only({TENANT: 200}))],
    "tenant:plan_request": [Case("post", only({TENANT: 302}), {"message": "Can we talk?"})],
    "tenant:notifications": [Case("post", only({TENANT: 302}), {"email_low_credit": "on"})],
    # Phone notifications: off without VAPID keys (409); a form body is no subscription (400).
    "tenant:push_subscribe": [Case("post", only({TENANT: 409}))],
    "tenant:push_unsubscribe": [Case("post", only({TENANT: 400}))],
    "tenant:email": [
        Case("post", only({TENANT: 302}), {"email": "n@example.com", "password": "pw"})
    ],
    # Password change is the signed-in user's own; reset is for anyone.
    "password_change": [Case("get", {**everyone_gets(200), ANON: LOGIN})],
    "password_change_done": [Case("get", {**everyone_gets(200), ANON: LOGIN})],
    "password_reset": [Case("get", everyone_gets(200))],
    "password_reset_done": [Case("get", everyone_gets(200))],
    "password_reset_confirm": [Case("get", everyone_gets(200))],  # a bad link says so
    "password_reset_complete": [Case("get", everyone_gets(200))],
    "api-tenancy": [Case("get", only({TENANT: 200}, anonymous=403))],
    "payments:topup": [Case("post", only({TENANT: 302}), {"amount": "10"})],
    "payments:emergency_credit": [Case("post", only({TENANT: 302}))],
    "payments:automatic": [
        Case("get", only({TENANT: 200})),
        Case("post", only({TENANT: 302}), {"threshold": "2", "amount": "10", "monthly_cap": "50"}),
    ],
    "payments:method_remove": [Case("post", only({TENANT: 302}))],
    # No deposit was asked of the tenancy: refused on the page.
    "payments:deposit_pay": [Case("post", only({TENANT: 400}))],
    # A tenant's own payments and bills, also after the tenancy ended.
    "payments:status": [Case("get", only({TENANT: 200, FORMER: 200}))],
    "payments:dev_checkout": [Case("get", only({TENANT: 200, FORMER: 200}))],
    "payments:resume": [Case("post", only({TENANT: 302, FORMER: 302}))],
    # A bill: its tenant, its landlord's members, and platform admins (dispute evidence).
    "payments:invoice": [Case("get", only(BILL_READERS))],
    "payments:invoice_print": [Case("get", only(BILL_READERS))],
    "payments:invoice_pdf": [Case("get", only(BILL_READERS))],
    # Landlord pages: members of A; the owner-only actions are 403 for staff.
    "landlord:units": [Case("get", LANDLORD_PAGE)],
    "landlord:flagged": [Case("get", LANDLORD_PAGE)],
    # The rows behind the home page's numbers, and the CSV exports (owners and staff).
    "landlord:bills": [Case("get", LANDLORD_PAGE)],
    "landlord:arrears": [Case("get", LANDLORD_PAGE)],
    "landlord:ledger": [Case("get", LANDLORD_PAGE)],
    "landlord:exports": [Case("get", LANDLORD_PAGE)],
    "landlord:unit": [Case("get", A_OBJECT_PAGE)],
    "landlord:override": [
        Case("post", only({OWNER: 302, STAFF: 302}), {"state": "on", "reason": "repair"}),
        Case("post", only({OWNER: 302, STAFF: 403}), {"state": "off", "reason": "unsafe"}),
    ],
    "landlord:override_release": [Case("post", only({OWNER: 302, STAFF: 302}))],
    # Answering a tenant's payment-plan request (owners and staff): the owner asks first,
    # so the staff member finds it answered (staff answering: test_plan_answers.py).
    "landlord:plan_answer": [
        Case("post", only({OWNER: 302, STAFF: 400}), {"decision": "decline", "note": "Not now"})
    ],
    "landlord:held_release": [
        Case("post", only({OWNER: 302, STAFF: 302}), {"reason": "meter was offline"})
    ],
    "landlord:setup": [Case("get", SETUP_PAGE)],
    "landlord:property_new": [
        Case("get", SETUP_PAGE),
        Case("post", only({OWNER: 302, STAFF: 403, OTHER: 302}), PROPERTY_FORM),
    ],
    "landlord:property_edit": [
        Case("get", A_SETUP_PAGE),
        Case("post", only({OWNER: 302, STAFF: 403}), PROPERTY_FORM),
    ],
    "landlord:unit_new": [Case("get", SETUP_PAGE)],
    "landlord:unit_import": [Case("get", SETUP_PAGE)],
    "landlord:unit_edit": [Case("get", A_SETUP_PAGE)],
    # A's prepaid unit has a tenant: archiving it is refused on the page.
    "landlord:unit_archive": [Case("post", only({OWNER: 400, STAFF: 403}))],
    "landlord:tariff_new": [Case("get", SETUP_PAGE)],
    "landlord:tariff": [Case("get", A_SETUP_PAGE)],
    "api-units": [Case("get", only({OWNER: 200, STAFF: 200, OTHER: 200}, anonymous=403))],
    "payments:landlord_payments": [Case("get", LANDLORD_PAGE)],
    # Meters, devices, tenants and billing mode (landlord/views_people.py): the
    # prepaid unit has a meter and a tenant, so registering and inviting are refused.
    "landlord:people:devices": [Case("get", A_OBJECT_PAGE)],
    "landlord:people:device_register": [
        Case("post", only({OWNER: 400, STAFF: 400}), {"protocol": "native", "ident": "new-1"})
    ],
    "landlord:people:device_rotate": [Case("post", only({OWNER: 200, STAFF: 200}))],
    "landlord:people:meter_event": [
        Case("get", A_OBJECT_PAGE),
        Case("post", only({OWNER: 400, STAFF: 400}), {"kind": "reset"}),
    ],
    "landlord:people:device_move": [
        Case("get", A_OBJECT_PAGE),
        Case("post", only({OWNER: 400, STAFF: 400}), {"reason": "x"}),
    ],
    "landlord:people:tenants": [Case("get", A_OBJECT_PAGE)],
    "landlord:people:invite": [
        Case(
            "post",
            only({OWNER: 400, STAFF: 400}),
            {"email": "x@example.com", "move_in": "2026-01-01"},
        )
    ],
    "landlord:people:billing_mode": [
        Case("get", A_OBJECT_PAGE),
        Case("post", only({OWNER: 302, STAFF: 403}), {"mode": "postpaid"}),
    ],
    "landlord:people:mode_schedule": [Case("post", only({OWNER: 400, STAFF: 403}))],
    "landlord:people:mode_schedule_cancel": [Case("post", only({OWNER: 302, STAFF: 403}))],
    "landlord:people:move_in": [Case("get", A_OBJECT_PAGE)],
    "landlord:people:move_out": [Case("get", A_OBJECT_PAGE)],
    "landlord:people:statement": [Case("get", A_OBJECT_PAGE)],
    "landlord:people:deposit": [
        Case("get", A_OBJECT_PAGE),
        Case("post", only({OWNER: 302, STAFF: 302}), {"deposit": "100"}),
        # The tenancy runs: its deposit is returned at the move-out, not now.
        Case("post", only({OWNER: 400, STAFF: 403}), {"action": "refund"}),
    ],
    # The signed link is the credential: the same page for everyone.
    "invite": [Case("get", everyone_gets(200))],
    "member_invite": [Case("get", everyone_gets(200))],
    # The team (landlord/views_staff.py): members see it, owners change it.
    "landlord:staff:team": [Case("get", LANDLORD_PAGE)],
    "landlord:staff:invite": [
        Case(
            "post",
            only({OWNER: 302, STAFF: 403, OTHER: 302}),
            {"email": "joiner@example.com", "role": "staff"},
        )
    ],
    "landlord:staff:cancel": [Case("post", only({OWNER: 302, STAFF: 403}))],
    "landlord:staff:role": [Case("post", only({OWNER: 302, STAFF: 403}), {"role": "owner"})],
    "landlord:staff:remove": [Case("post", only({OWNER: 400, STAFF: 403}))],
    "payments:refund": [
        Case("get", only({OWNER: 200, STAFF: 403})),
        Case("post", only({OWNER: 302, STAFF: 403}), {"amount": "1", "reason": "misread"}),
    ],
    "payments:connect": [Case("get", only({OWNER: 200, STAFF: 403, OTHER: 200}))],
    "payments:connect_start": [Case("post", only({OWNER: 302, STAFF: 403, OTHER: 302}))],
    # Disputes: the tenant's own (also after the tenancy ended), the landlord's
    # members and platform admins. Steps that change a case are sent with input
    # the service refuses (400), so every persona meets the same case: this table
    # checks who may reach a step; tests/disputes check the steps themselves. A
    # party who can see the case but whose step it is not gets 403.
    "disputes:tenant_list": [Case("get", only({TENANT: 200, FORMER: 200}))],
    "disputes:new": [
        Case("get", only({TENANT: 200, FORMER: 200})),
        Case("post", only({TENANT: 400, FORMER: 400}), {"subject": "period", "message": "x"}),
    ],
    "disputes:detail": [Case("get", only({TENANT: 200, FORMER: 200, **MEMBERS_200, ADMIN: 302}))],
    "disputes:respond": [
        Case("post", only({OWNER: 400, STAFF: 400, **PARTY_403(TENANT, FORMER, ADMIN)}))
    ],
    "disputes:accept": [
        Case("post", only({TENANT: 400, FORMER: 400, **PARTY_403(OWNER, STAFF, ADMIN)}))
    ],
    "disputes:escalate": [
        Case("post", only({TENANT: 400, FORMER: 400, ADMIN: 400, **PARTY_403(OWNER, STAFF)}))
    ],
    "disputes:withdraw": [
        Case("post", only({TENANT: 302, FORMER: 302, **PARTY_403(OWNER, STAFF, ADMIN)}))
    ],
    "disputes:message": [
        Case("post", only({TENANT: 400, FORMER: 400, OWNER: 400, STAFF: 400, ADMIN: 400}))
    ],
    "disputes:attachment": [
        Case("get", only({TENANT: 200, FORMER: 200, **MEMBERS_200, ADMIN: 200}))
    ],
    "disputes:landlord_list": [Case("get", LANDLORD_PAGE)],
    # The admins' desk: platform admins only; to anyone else it does not exist.
    "disputes:desk": [Case("get", only({ADMIN: 200}))],
    "disputes:desk_case": [Case("get", only({ADMIN: 200}))],
    "disputes:desk_assign": [Case("post", only({ADMIN: 302}), {"assignee": "me"})],
    "disputes:desk_resolve": [Case("post", only({ADMIN: 400}), {"adjustment": "1"})],
    "disputes:desk_refund": [Case("post", only({ADMIN: 400}), {"amount": "1"})],
    "disputes:desk_approve": [Case("post", only({ADMIN: 400}))],
    "disputes:desk_decline": [Case("post", only({ADMIN: 400}))],
    "disputes:desk_reject": [Case("post", only({ADMIN: 400}))],
    "disputes:desk_chargeback": [Case("get", only({ADMIN: 200}))],
    # Signed by Stripe, not by a session: the same for everyone (no secret set: 404).
    "payments:stripe_webhook": [Case("post", everyone_gets(404))],
    "payments:stripe_connect_webhook": [Case("post", everyone_gets(404))],
}

OPEN, REFUSED = "open", "refused"
ANY_OTHER = "(any other path)"  # the router's catch-all, an empty pattern
WS: dict[str, dict[str, str]] = {
    "ws/live/tenancy/<int:tenancy_id>/": {
        **dict.fromkeys(PERSONA_NAMES, REFUSED),
        TENANT: OPEN,  # the former tenant's own ended tenancy is refused too
    },
    "ws/live/landlord/": {
        **dict.fromkeys(PERSONA_NAMES, REFUSED),
        OWNER: OPEN,
        STAFF: OPEN,
        OTHER: OPEN,
    },
    # Devices authenticate with their own credential; a browser session is nothing.
    "ws/device/v1": dict.fromkeys(PERSONA_NAMES, REFUSED),
    "ws/shelly/<str:ident>/<str:secret>": dict.fromkeys(PERSONA_NAMES, REFUSED),
    ANY_OTHER: dict.fromkeys(PERSONA_NAMES, REFUSED),
}


# --- discovery ------------------------------------------------------------------


def http_routes() -> dict[str, URLPattern]:
    """Every URL pattern by its (namespaced) name, the admin's own pages aside:
    they are the Django admin's, behind its staff check (test_admin_is_for_staff_only);
    its sign-in page is ours and listed."""
    found: dict[str, URLPattern] = {}

    def walk(patterns: list[Any], namespaces: list[str]) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                if entry.app_name == "admin":
                    continue
                walk(
                    entry.url_patterns, namespaces + ([entry.namespace] if entry.namespace else [])
                )
                continue
            name = ":".join([*namespaces, entry.name or str(entry.pattern)])
            assert name not in found, f"two routes named {name}"
            found[name] = entry

    walk(get_resolver().url_patterns, [])
    return found


def _unwrap(app: Any) -> Any:
    """Through the middleware (Origin check, session, auth) to the router or consumer."""
    while not isinstance(app, URLRouter):
        inner = getattr(app, "inner", None) or getattr(app, "application", None)
        if inner is None:
            return app
        app = inner
    return app


def ws_routes() -> list[str]:
    """Every WebSocket route of config/asgi.py's router, as one pattern string."""
    found: list[str] = []

    def walk(router: URLRouter, prefix: str) -> None:
        for route in router.routes:
            pattern = prefix + str(route.pattern).lstrip("^").rstrip("$")
            app = _unwrap(route.callback)
            if isinstance(app, URLRouter):
                walk(app, pattern)
            else:
                found.append(pattern or ANY_OTHER)

    walk(_unwrap(asgi._router.application_mapping["websocket"]), "")
    return found


def test_every_route_is_in_the_table():
    missing = sorted(set(http_routes()) - set(HTTP))
    assert not missing, f"routes without a line in the access table: {missing}"
    stale = sorted(set(HTTP) - set(http_routes()))
    assert not stale, f"the access table lists routes that do not exist: {stale}"


def test_every_socket_is_in_the_table():
    missing = sorted(set(ws_routes()) - set(WS))
    assert not missing, f"sockets without a line in the access table: {missing}"
    stale = sorted(set(WS) - set(ws_routes()))
    assert not stale, f"the access table lists sockets that do not exist: {stale}"


def test_every_persona_is_in_every_line():
    for name, cases in HTTP.items():
        for case in cases:
            assert set(case.expected) == set(PERSONA_NAMES), name
    for name, expected in WS.items():
        assert set(expected) == set(PERSONA_NAMES), name


# --- the checks -------------------------------------------------------------------


def _client(people: Everyone, persona: str) -> Client:
    client = Client()
    user = people.user(persona)
    if user is not None:
        client.force_login(user)
    return client


def _http_cases() -> Iterator[Any]:
    for name, cases in sorted(HTTP.items()):
        for index, case in enumerate(cases):
            yield pytest.param(name, index, id=f"{name}-{case.method}{index}")


def _outcome_http(resp: Any) -> int | str:
    login = reverse("login")
    if resp.status_code == 302 and resp["Location"].startswith(login):
        return LOGIN
    return int(resp.status_code)


@pytest.mark.parametrize(("name", "index"), list(_http_cases()))
def test_route(everyone, django_capture_on_commit_callbacks, settings, tmp_path, name, index):
    """Each persona in turn (in PERSONA_NAMES order) on the same objects."""
    settings.MEDIA_ROOT = tmp_path  # dispute attachments
    case = HTTP[name][index]
    pattern = http_routes()[name]
    # given landlord A's objects, a running and an ended tenancy's (payments succeeded)
    with django_capture_on_commit_callbacks(execute=True):
        worlds = {FORMER: build_world(everyone, FORMER), TENANT: build_world(everyone, TENANT)}
        provider = get_provider()
        assert isinstance(provider, DevelopmentProvider)
        for world in worlds.values():
            provider.complete(payment=world.objects["payment"], outcome="succeeded")
        urls = {key: reverse(name, kwargs=_kwargs(w, pattern)) for key, w in worlds.items()}
    # when each persona asks
    got = {}
    for persona in PERSONA_NAMES:
        url = urls[FORMER if persona == FORMER else TENANT]
        with django_capture_on_commit_callbacks(execute=True):
            resp = getattr(_client(everyone, persona), case.method)(url, case.data)
        got[persona] = _outcome_http(resp)
    # then
    assert got == case.expected


@database_sync_to_async
def _socket_setup(people: Everyone, persona: str, pattern: str) -> tuple[str, str | None]:
    tenancy = people.former_tenancy if persona == FORMER else people.a.prepaid_tenancy
    path = "/" + (
        pattern.replace(ANY_OTHER, "ws/no-such-socket/")
        .replace("<int:tenancy_id>", str(tenancy.pk))
        .replace("<str:ident>", people.a.prepaid_device.device.ident)
        .replace("<str:secret>", "not-the-secret")
    )
    client = _client(people, persona)
    sid = client.cookies["sessionid"].value if "sessionid" in client.cookies else None
    return path, sid


def _communicator(path: str, sid: str | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if sid:
        headers.append((b"cookie", f"sessionid={sid}".encode()))
    return WebsocketCommunicator(asgi.application, path, headers=headers)


async def _outcome_ws(path: str, sid: str | None) -> str:
    comm = _communicator(path, sid)
    connected, _ = await comm.connect()
    if not connected:
        return REFUSED
    first = await comm.receive_output(timeout=5)
    await comm.disconnect()
    # A device socket accepts only to close with a code the device can read.
    return OPEN if first["type"] == "websocket.send" else REFUSED


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pattern", sorted(WS))
async def test_socket(teveryone, pattern):
    got = {}
    for persona in PERSONA_NAMES:
        path, sid = await _socket_setup(teveryone, persona, pattern)
        got[persona] = await _outcome_ws(path, sid)
    assert got == WS[pattern]


# --- what the statuses do not show ----------------------------------------------------------


def test_landlord_unit_list_shows_only_own_units(everyone):
    body = _client(everyone, OWNER).get(reverse("landlord:units")).content.decode()
    assert "House a" in body and "House b" not in body


def test_api_units_are_the_landlords_own(everyone):
    resp = _client(everyone, OTHER).get(reverse("api-units"))
    assert {u["property"] for u in resp.json()} == {"House b"}


def test_admin_is_for_staff_only(everyone):
    assert _client(everyone, ADMIN).get("/admin/").status_code == 200
    for persona in (OWNER, STAFF, TENANT, FORMER):
        resp = _client(everyone, persona).get("/admin/")
        assert resp.status_code == 302 and resp["Location"].startswith("/admin/login/")


def test_home_routes_each_persona(everyone):
    assert _client(everyone, ANON).get("/")["Location"] == reverse("login")
    assert _client(everyone, OWNER).get("/")["Location"] == reverse("landlord:units")
    assert _client(everyone, STAFF).get("/")["Location"] == reverse("landlord:units")
    assert _client(everyone, TENANT).get("/")["Location"] == reverse(
        "tenant:home", args=[everyone.a.prepaid_tenancy.pk]
    )
    assert _client(everyone, FORMER).get("/")["Location"] == reverse(
        "tenant:home", args=[everyone.former_tenancy.pk]
    )


def test_login_form_errors_are_clear(everyone):
    resp = Client().post(reverse("login"), {"username": "tenant_a1", "password": "nope"})
    assert resp.status_code == 200
    assert "did not match" in resp.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_socket_snapshots_are_the_personas_own(teveryone):
    comm = _communicator(
        *await _socket_setup(teveryone, TENANT, "ws/live/tenancy/<int:tenancy_id>/")
    )
    assert (await comm.connect())[0]
    assert 'id="tenancy-panel"' in await comm.receive_from(timeout=5)
    await comm.disconnect()
    for persona, own, other in (
        (OWNER, teveryone.a, teveryone.b),
        (OTHER, teveryone.b, teveryone.a),
    ):
        comm = _communicator(*await _socket_setup(teveryone, persona, "ws/live/landlord/"))
        assert (await comm.connect())[0]
        snapshot = await comm.receive_from(timeout=5)
        assert f'id="unit-{own.prepaid.pk}"' in snapshot
        assert f'id="unit-{other.prepaid.pk}"' not in snapshot
        await comm.disconnect()


def test_user_model_is_default():
    from django.contrib.auth import get_user_model

    # Personas rely on the stock user model; a change here needs new personas.
    assert get_user_model()._meta.label == "auth.User"
