from __future__ import annotations

from datetime import date

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from disputes import services
from disputes.models import Dispute
from landlord.models import Tenancy
from payments.ledger import Leg, landlord_account, ledger_post, tenant_account
from payments.models import Account, Invoice, LedgerTransaction

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%fake\n"


@pytest.fixture(autouse=True)
def _private_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def png(name: str = "meter.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, PNG, content_type="image/png")


def charge(tenancy: Tenancy, amount: int, key: str) -> None:
    """Take money from the tenant's balance (as usage would)."""
    revenue = landlord_account(landlord=tenancy.landlord, kind=Account.Kind.REVENUE, currency="GBP")
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind=LedgerTransaction.Kind.ADJUSTMENT,
        idempotency_key=key,
        legs=[Leg(debit=tenant_account(tenancy=tenancy), credit=revenue, amount_minor=amount)],
    )


def invoice(tenancy: Tenancy, total: int = 4000, month: int = 1) -> Invoice:
    return Invoice.objects.create(
        landlord=tenancy.landlord,
        tenancy=tenancy,
        period_start=date(2026, month, 1),
        period_end=date(2026, month + 1, 1),
        currency="GBP",
        total_minor=total,
    )


def open_on_invoice(
    tenancy: Tenancy, *, amount: int | None = 1000, files=(), total: int = 4000, month: int = 1
) -> Dispute:
    return services.dispute_open(
        tenancy=tenancy,
        actor=tenancy.tenant,
        item=services.DisputeItem(
            subject=Dispute.Subject.INVOICE, invoice=invoice(tenancy, total=total, month=month)
        ),
        category=Dispute.Category.WRONG_READING,
        message="The January reading is far too high.",
        amount_minor=amount,
        files=files,
    )
