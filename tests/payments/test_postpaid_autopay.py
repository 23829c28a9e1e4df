"""Postpaid autopay runs on the due date, once per bill, and only with consent."""

from __future__ import annotations

from datetime import UTC, date, datetime

from payments import automatic, billing
from payments.models import Invoice, Payment, PaymentSettings, SavedPaymentMethod

from .test_billing import _pay


def _issue(world) -> Invoice:
    return billing.invoice_issue(
        tenancy=world.postpaid_tenancy,
        period_start=date(2026, 1, 1),
        now=datetime(2026, 2, 1, 9, tzinfo=UTC),
    )


def _consent(world) -> None:
    PaymentSettings.objects.create(
        landlord=world.landlord, tenancy=world.postpaid_tenancy, autopay_enabled=True
    )
    SavedPaymentMethod.objects.create(
        landlord=world.landlord,
        tenancy=world.postpaid_tenancy,
        provider="dev",
        provider_ref="pm_dev_1",
    )


def test_autopay_charges_on_the_due_date_in_the_property_zone_once(
    postpaid_tou, django_capture_on_commit_callbacks
):
    world = postpaid_tou
    world.prop.timezone = "America/New_York"
    world.prop.save()
    _consent(world)
    invoice = _issue(world)
    # issued 1 Feb 04:00 in New York: due 15 Feb there
    assert invoice.due_date == date(2026, 2, 15)
    with django_capture_on_commit_callbacks(execute=True):
        # 15 Feb 03:00 UTC is still 14 Feb in New York
        assert automatic.autopays_run_due(now=datetime(2026, 2, 15, 3, tzinfo=UTC)) == 0
        assert automatic.autopays_run_due(now=datetime(2026, 2, 15, 6, tzinfo=UTC)) == 1
        assert automatic.autopays_run_due(now=datetime(2026, 2, 15, 7, tzinfo=UTC)) == 0
        assert automatic.autopays_run_due(now=datetime(2026, 2, 16, 7, tzinfo=UTC)) == 0
    [payment] = Payment.objects.all()
    assert payment.amount_minor == invoice.total_minor and payment.off_session
    invoice.refresh_from_db()
    assert invoice.autopay_tried_at == datetime(2026, 2, 15, 6, tzinfo=UTC)


def test_autopay_charges_only_what_is_outstanding(postpaid_tou, django_capture_on_commit_callbacks):
    world = postpaid_tou
    _consent(world)
    invoice = _issue(world)
    _pay(world.postpaid_tenancy, 1000)
    with django_capture_on_commit_callbacks(execute=True):
        assert automatic.autopays_run_due(now=datetime(2026, 2, 15, 9, tzinfo=UTC)) == 1
    autopay = Payment.objects.get(purpose=Payment.Purpose.AUTOPAY)
    assert autopay.amount_minor == invoice.total_minor - 1000
