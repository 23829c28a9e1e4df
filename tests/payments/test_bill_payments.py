"""Paying a postpaid bill: by hand (in full or in part) and by autopay on its due date."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.test import Client
from django.urls import reverse

from payments import automatic, billing
from payments.ledger import tenant_account
from payments.models import Payment, PaymentSettings, SavedPaymentMethod

from .test_billing import JAN, _record


def _issue(world):
    dev = world.postpaid_device.device
    _record(dev, (1, 120, 0), (2, 180, 1000), (3, 420, 1000), base=JAN)
    return billing.invoice_issue(tenancy=world.postpaid_tenancy, period_start=date(2026, 1, 1))


def test_tenant_pays_part_of_their_bill_with_its_reference(postpaid_tou):
    invoice = _issue(postpaid_tou)
    client = Client()
    client.force_login(postpaid_tou.postpaid_tenant)
    page = client.get(reverse("payments:invoice", args=[invoice.pk])).content.decode()
    assert "Pay this bill" in page
    resp = client.post(
        reverse("payments:topup", args=[postpaid_tou.postpaid_tenancy.pk]),
        {"amount": "5.00", "invoice": str(invoice.pk)},
    )
    assert resp.status_code == 302
    payment = Payment.objects.get()
    assert (payment.amount_minor, payment.purpose, payment.reference) == (
        500,
        Payment.Purpose.BILL,
        f"invoice:{invoice.number}",
    )


def test_another_tenancys_bill_cannot_be_paid_from_this_one(personas, postpaid_tou):
    invoice = _issue(postpaid_tou)
    # The prepaid tenant of the same landlord names the postpaid tenant's bill.
    client = Client()
    client.force_login(personas.a.prepaid_tenant)
    for bogus in (str(invoice.pk), "not-a-number", "999999"):
        resp = client.post(
            reverse("payments:topup", args=[personas.a.prepaid_tenancy.pk]),
            {"amount": "5.00", "invoice": bogus},
        )
        assert resp.status_code == 404
    assert Payment.objects.count() == 0


def test_autopay_charges_what_is_owed_on_the_due_date(
    postpaid_tou, django_capture_on_commit_callbacks
):
    tenancy = postpaid_tou.postpaid_tenancy
    PaymentSettings.objects.create(
        landlord=postpaid_tou.landlord, tenancy=tenancy, autopay_enabled=True
    )
    SavedPaymentMethod.objects.create(
        landlord=postpaid_tou.landlord, tenancy=tenancy, provider="dev", provider_ref="pm_dev_9"
    )
    with django_capture_on_commit_callbacks(execute=True):
        invoice = _issue(postpaid_tou)
    # Nothing is charged when the bill is issued, nor before its due date.
    assert Payment.objects.count() == 0
    due_at = datetime.combine(invoice.due_date, time(0, 30), UTC)
    with django_capture_on_commit_callbacks(execute=True):
        assert automatic.autopays_run_due(now=due_at - timedelta(hours=1)) == 0
    assert Payment.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert automatic.autopays_run_due(now=due_at) == 1
    payment = Payment.objects.get(reference=f"invoice:{invoice.number}")
    assert payment.off_session and payment.status == Payment.Status.SUCCEEDED
    # The tenant owes more than this bill (December's standing charges too):
    # autopay takes the bill's total, never more.
    assert payment.amount_minor == invoice.total_minor
    assert payment.ledger_transaction is not None
    assert tenant_account(tenancy=tenancy).balance_minor < 0


def test_no_autopay_without_consent(postpaid_tou, django_capture_on_commit_callbacks):
    SavedPaymentMethod.objects.create(
        landlord=postpaid_tou.landlord,
        tenancy=postpaid_tou.postpaid_tenancy,
        provider="dev",
        provider_ref="pm_dev_10",
    )
    with django_capture_on_commit_callbacks(execute=True):
        invoice = _issue(postpaid_tou)
        automatic.autopays_run_due(now=datetime.combine(invoice.due_date, time(12), UTC))
    assert Payment.objects.count() == 0
