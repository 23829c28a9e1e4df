"""The tenant's home in each state: one supply line with its reason, at most one alert.

Each state is reached through the services that produce it (a balance posted,
the unit evaluated, a landlord's override, emergency credit taken), then the
device's report is set as a relay would send it.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord.models import Unit
from meters.models import Device, Meter
from payments.emergency import emergency_credit_take
from payments.models import Invoice, Payment
from payments.providers import DevelopmentProvider, get_provider
from payments.services import payment_create
from supply.decision import supply_evaluate
from supply.overrides import supply_override_set
from tests.landlord.tenant_helpers import charge_usage, credit, reading

pytestmark = pytest.mark.django_db


def _text(body: str, testid: str) -> str:
    """The text of the one element with ``data-testid``, tags stripped."""
    found = re.findall(rf'<(\w+)[^>]*data-testid="{testid}"[^>]*>(.*?)</\1>', body, re.S)
    assert len(found) == 1, f"{testid}: {len(found)} elements"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found[0][1])).split())


def _home(world) -> str:
    client = Client()
    client.force_login(world.prepaid_tenant)
    resp = client.get(reverse("tenant:home", args=[world.prepaid_tenancy.pk]))
    assert resp.status_code == 200
    return resp.content.decode()


def _panel(body: str) -> str:
    return body[body.index('id="tenancy-panel"') : body.index('id="topup"')]


def _relay(world, reported: str) -> None:
    Device.objects.filter(pk=world.prepaid_device.device.pk).update(
        reported_relay=reported, connected=True, last_seen_at=timezone.now()
    )


def _usage(world) -> None:
    """Half an hour at 200 W: enough for a runway and an average power."""
    reading(world.prepaid_device.device, 1, 40, 10_000)
    reading(world.prepaid_device.device, 2, 10, 10_100)
    Meter.objects.filter(device=world.prepaid_device.device).update(
        last_reading_at=timezone.now(), last_register_wh=10_100
    )


def _one_alert(body: str) -> str:
    panel = _panel(body)
    assert panel.count('data-testid="alert"') == 1, panel
    assert 'role="alert"' not in panel  # live re-renders must not re-announce it
    return _text(panel, "alert")


def _no_alert(body: str) -> None:
    assert 'data-testid="alert"' not in _panel(body)


def test_prepaid_on(personas):
    a = personas.a
    credit(a.prepaid_tenancy, 1000)
    _usage(a)
    supply_evaluate(unit=a.prepaid, reason="test")
    _relay(a, "on")
    body = _home(a)
    assert _text(body, "balance") == "£10.00"
    assert _text(body, "supply-line").startswith("supply on ·")  # then the freshness
    assert 'data-testid="supply-reason"' not in body
    assert _text(body, "runway").startswith("Lasts until about ")
    _no_alert(body)
    assert "using about" in body
    assert _text(body, "announce-polite") == "Credit £10.00"
    assert body.count('class="button primary"') == 1 and "Top up</a>" in body


def test_prepaid_low(personas):
    a = personas.a
    credit(a.prepaid_tenancy, 150)  # below the £2.00 threshold
    supply_evaluate(unit=a.prepaid, reason="test")
    _relay(a, "on")
    body = _home(a)
    assert _text(body, "supply") == "supply on"
    assert _one_alert(body) == "Low credit: top up soon to keep your supply on."
    # Emergency credit is offered inside the live panel, with what is repaid.
    Unit.objects.filter(pk=a.prepaid.pk).update(emergency_credit_minor=300)
    panel = _panel(_home(a))
    assert 'id="emergency-credit"' in panel
    assert "repay it from your next top-ups (25% of each)" in panel


def test_prepaid_on_emergency_credit(personas):
    a = personas.a
    Unit.objects.filter(pk=a.prepaid.pk).update(emergency_credit_minor=300)
    emergency_credit_take(tenancy=a.prepaid_tenancy, actor_id=None)
    _relay(a, "on")
    body = _home(a)
    assert _text(body, "balance") == "£3.00"
    assert _text(body, "supply-reason") == "· on emergency credit"
    assert 'id="emergency-credit"' not in body  # taken: no second offer
    assert "Emergency credit to repay: £3.00" in body
    _no_alert(body)  # £3.00 is above the low-credit threshold


def test_prepaid_scheduled_cutoff(personas):
    a = personas.a
    a.prop.cutoff_notice_minutes = 60
    a.prop.save(update_fields=["cutoff_notice_minutes"])
    credit(a.prepaid_tenancy, -50)
    supply_evaluate(unit=a.prepaid, reason="test")
    _relay(a, "on")
    body = _home(a)
    assert _text(body, "balance") == "\u2212£0.50"
    reason = _text(body, "supply-reason")
    assert re.fullmatch(r"· scheduled off \w{3} \d\d:\d\d unless £1\.00 is added", reason), reason
    alert = _one_alert(body)
    assert re.fullmatch(
        r"Your credit has run out\. Top up before \w{3} \d\d:\d\d to keep your supply on\.", alert
    )
    assert 'data-testid="runway"' not in body  # the supply line says it


def test_prepaid_off_for_no_credit(personas):
    a = personas.a
    _usage(a)
    credit(a.prepaid_tenancy, -50)
    supply_evaluate(unit=a.prepaid, reason="test")  # no notice period here: off at once
    assert Device.objects.get(pk=a.prepaid_device.device.pk).desired_relay == "off"
    _relay(a, "off")
    body = _home(a)
    assert _text(body, "supply") == "supply off"
    assert _text(body, "supply-reason") == "· no credit left"
    assert _one_alert(body) == (
        "Your credit has run out. Top up at least £1.00 to switch your supply back on."
    )
    assert "using about" not in body
    assert 'data-assertive-text="Your credit has run out.' in body


def test_prepaid_off_by_landlord_with_reason(personas):
    a = personas.a
    credit(a.prepaid_tenancy, 1000)
    supply_override_set(
        unit=a.prepaid, state="off", reason="Rewiring the meter cupboard", actor_id=None
    )
    _relay(a, "off")
    body = _home(a)
    assert _text(body, "supply") == "supply off"
    assert _text(body, "supply-reason") == (
        "· switched off by your landlord: Rewiring the meter cupboard"
    )
    assert _one_alert(body) == (
        "Your landlord has switched your supply off. A top-up does not switch it back on: "
        "please contact your landlord."
    )


def test_supply_back_on_replaces_the_cutoff(personas):
    a = personas.a
    credit(a.prepaid_tenancy, -50)
    supply_evaluate(unit=a.prepaid, reason="test")
    _relay(a, "off")
    credit(a.prepaid_tenancy, 1050)
    supply_evaluate(unit=a.prepaid, reason="test")
    body = _home(a)  # the relay has not switched yet
    assert _text(body, "supply-line").startswith("supply off · switching back on now…")
    _no_alert(body)


def _postpaid_home(world) -> str:
    client = Client()
    client.force_login(world.postpaid_tenant)
    resp = client.get(reverse("tenant:home", args=[world.postpaid_tenancy.pk]))
    assert resp.status_code == 200
    return resp.content.decode()


def test_postpaid_without_a_bill(personas):
    a = personas.a
    charge_usage(a.postpaid_tenancy, 1234)
    body = _postpaid_home(a)
    assert "No bill yet" in _text(body, "bill-meta")
    assert "Amount due" not in body and "amount due" not in body
    assert _text(body, "accrued").startswith("£")
    assert _text(body, "projected").startswith("about £")
    assert _text(body, "supply") == "supply on" or "unknown" in _text(body, "supply")
    _no_alert(body)


def test_postpaid_with_a_bill(personas):
    a = personas.a
    charge_usage(a.postpaid_tenancy, 4321)
    today = timezone.localdate()
    Invoice.objects.create(
        landlord=a.landlord,
        tenancy=a.postpaid_tenancy,
        period_start=(today.replace(day=1) - timedelta(days=1)).replace(day=1),
        period_end=today.replace(day=1),
        currency="GBP",
        total_minor=3000,
    )
    body = _postpaid_home(a)
    assert _text(body, "bill-amount") == "£30.00"
    # Owed on the bill, as its own page says: the debt, at most the bill's total.
    assert _text(body, "bill-meta").endswith("£30.00 still to pay")
    assert 'data-testid="pay-bill"' in body
    _no_alert(body)


def test_topup_preview_is_the_split_the_ledger_posts(personas, django_capture_on_commit_callbacks):
    a = personas.a
    Unit.objects.filter(pk=a.prepaid.pk).update(emergency_credit_minor=300)
    emergency_credit_take(tenancy=a.prepaid_tenancy, actor_id=None)
    client = Client()
    client.force_login(a.prepaid_tenant)
    preview = client.get(
        reverse("tenant:topup_preview", args=[a.prepaid_tenancy.pk]), {"amount": "5"}
    ).content.decode()
    assert "£5.00 → £1.25 repays emergency credit, £3.75 credit" in preview
    home = _home(a)
    assert "£20.00 → £3.00 repays emergency credit, £17.00 credit" in home  # a preset
    provider = get_provider()
    assert isinstance(provider, DevelopmentProvider)
    payment = payment_create(
        tenancy=a.prepaid_tenancy, amount_minor=500, provider=provider.name, created_by_id=None
    )
    with django_capture_on_commit_callbacks(execute=True):
        provider.complete(payment=payment, outcome="succeeded")
    receipt = client.get(reverse("payments:status", args=[payment.uuid])).content.decode()
    assert _text(receipt, "receipt-repaid") == "£1.25"
    assert _text(receipt, "receipt-credit") == "£3.75"
    assert _text(receipt, "receipt-number") == f"R-{payment.pk:06d}"
    assert _text(receipt, "receipt-for").startswith("Top-up")
    assert "per kWh" in receipt


def test_receipt_number_is_short_and_stable(personas):
    a = personas.a
    payment = payment_create(
        tenancy=a.prepaid_tenancy, amount_minor=500, provider="dev", created_by_id=None
    )
    again = Payment.objects.get(pk=payment.pk)
    assert payment.receipt_number == again.receipt_number == f"R-{payment.pk:06d}"
    shown = _text(_home(a), "receipts")
    assert shown.startswith(payment.receipt_number) and str(payment.uuid) not in shown


def test_bill_payment_receipt_says_so(personas, django_capture_on_commit_callbacks):
    a = personas.a
    invoice = Invoice.objects.create(
        landlord=a.landlord,
        tenancy=a.postpaid_tenancy,
        period_start=timezone.localdate().replace(day=1),
        period_end=timezone.localdate().replace(day=1) + timedelta(days=31),
        currency="GBP",
        total_minor=800,
    )
    provider = get_provider()
    assert isinstance(provider, DevelopmentProvider)
    payment = payment_create(
        tenancy=a.postpaid_tenancy,
        amount_minor=800,
        provider=provider.name,
        created_by_id=None,
        purpose=Payment.Purpose.BILL,
        invoice=invoice,
    )
    with django_capture_on_commit_callbacks(execute=True):
        provider.complete(payment=payment, outcome="succeeded")
    client = Client()
    client.force_login(a.postpaid_tenant)
    receipt = client.get(reverse("payments:status", args=[payment.uuid])).content.decode()
    assert _text(receipt, "receipt-for").startswith(f"Bill payment ({invoice.number})")


def test_history_lists_payments_credits_and_adjustments_paginated(personas):
    a = personas.a
    for i in range(30):
        credit(a.prepaid_tenancy, 100 + i, memo=f"goodwill {i}")
    client = Client()
    client.force_login(a.prepaid_tenant)
    url = reverse("tenant:history", args=[a.prepaid_tenancy.pk])
    first = client.get(url).content.decode()
    assert first.count("goodwill") == 25 and "goodwill 29" in first
    assert "Page 1 of 2" in first and "per kWh" in _text(first, "prices")
    second = client.get(url, {"page": 2}).content.decode()
    assert second.count("goodwill") == 5 and "goodwill 0" in second
    assert "+£1.00" in second
