"""Payments without the tenant at the keyboard: postpaid autopay and prepaid auto top-up.

Both charge the tenancy's saved card off-session through the gateway. The
charge only creates a ``Payment`` and asks the provider; the ledger is
credited by the provider's ``payment_intent.succeeded`` event like any other
payment. When the bank asks for authentication, the payment keeps an
``action_url`` and the tenant's page offers "Confirm payment", which opens a
hosted checkout for the same payment (on-session).

``autopay_charge`` takes the amount and our reference explicitly; postpaid
bills are charged on their due date by :func:`autopays_run_due`.
"""

from __future__ import annotations

import logging
import zoneinfo
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import BigIntegerField, Sum
from django.tasks import task
from django.urls import reverse
from django.utils import timezone

from config.prepared import Param, Prepared
from landlord.audit import audit_record
from landlord.models import Tenancy

from .ledger import tenant_account
from .models import Invoice, Payment, PaymentSettings, SavedPaymentMethod
from .providers import get_provider
from .services import (
    PaymentError,
    invoice_amount_due,
    payment_abandon,
    payment_create,
    topup_limits,
)

logger = logging.getLogger(__name__)

LIVE = [Payment.Status.PENDING, Payment.Status.PROCESSING, Payment.Status.SUCCEEDED]


_LATEST_METHOD: Prepared[SavedPaymentMethod] = Prepared(
    lambda: SavedPaymentMethod.objects.filter(
        tenancy_id=Param("tenancy_id", BigIntegerField())
    ).order_by("-created_at", "-pk")[:1]
)


def saved_method_for(*, tenancy: Tenancy) -> SavedPaymentMethod | None:
    found = _LATEST_METHOD.run(tenancy_id=tenancy.pk)
    return found[0] if found else None


def payment_settings_for(*, tenancy: Tenancy) -> PaymentSettings:
    found, _ = PaymentSettings.objects.get_or_create(
        tenancy=tenancy, defaults={"landlord_id": tenancy.landlord_id}
    )
    return found


@transaction.atomic
def _off_session_payment_open(
    *, tenancy: Tenancy, amount_minor: int, reference: str, purpose: str, provider: str
) -> tuple[Payment, bool]:
    """One live payment per (tenancy, purpose, reference), under the tenancy's row lock."""
    Tenancy.objects.select_for_update().get(pk=tenancy.pk)
    existing = (
        Payment.objects.filter(
            tenancy=tenancy, purpose=purpose, reference=reference, status__in=LIVE
        )
        .order_by("pk")
        .first()
    )
    if existing is not None:
        return existing, False
    payment = payment_create(
        tenancy=tenancy,
        amount_minor=amount_minor,
        provider=provider,
        created_by_id=None,
        purpose=purpose,
        reference=reference,
        off_session=True,
    )
    if purpose == Payment.Purpose.AUTO_TOPUP:
        PaymentSettings.objects.filter(tenancy=tenancy).update(last_auto_topup_at=timezone.now())
    return payment, True


def autopay_charge(
    *,
    tenancy: Tenancy,
    amount_minor: int,
    reference: str,
    purpose: str = Payment.Purpose.AUTOPAY,
) -> Payment | None:
    """Charge the saved card off-session for ``reference``, at most once while a charge is live.

    Returns the payment (pending until the provider's event), or None when
    there is no provider or saved card. On ``authentication_required`` the
    payment gets an ``action_url`` where the tenant pays on-session.
    """
    provider = get_provider()
    method = saved_method_for(tenancy=tenancy)
    if provider is None or method is None or method.provider != provider.name:
        return None
    if not provider.payee_status(landlord=tenancy.landlord).ready:
        return None
    wanted = PaymentSettings.objects.filter(tenancy=tenancy)
    if purpose == Payment.Purpose.AUTOPAY and not wanted.filter(autopay_enabled=True).exists():
        return None
    if (
        purpose == Payment.Purpose.AUTO_TOPUP
        and not wanted.filter(auto_topup_enabled=True).exists()
    ):
        return None
    payment, created = _off_session_payment_open(
        tenancy=tenancy,
        amount_minor=amount_minor,
        reference=reference,
        purpose=purpose,
        provider=provider.name,
    )
    if not created:
        return payment
    # The provider call happens after commit; its idempotency key (the
    # payment's uuid) makes a retry of this step harmless.
    result = provider.off_session_charge(payment=payment, method=method)
    if result.status == "requires_action":
        Payment.objects.filter(pk=payment.pk).update(
            action_url=reverse("payments:resume", args=[payment.uuid]), updated_at=timezone.now()
        )
    elif result.status == "failed":
        payment_abandon(payment=payment, why=result.message or "off-session charge failed")
    audit_record(
        landlord_id=tenancy.landlord_id,
        action=f"payment.{purpose}",
        tenancy=tenancy,
        data={"payment": str(payment.uuid), "result": result.status, "reference": reference},
    )
    payment.refresh_from_db()
    return payment


def auto_topup_due(*, tenancy: Tenancy, now: datetime | None = None) -> int:
    """The amount to top up now (0 when not due): below threshold, once per period, within cap."""
    now = now or timezone.now()
    cfg = PaymentSettings.objects.filter(tenancy=tenancy, auto_topup_enabled=True).first()
    if cfg is None or not tenancy.unit.is_prepaid:
        return 0
    if not tenancy.is_current():
        return 0  # an ended tenancy's card is never topped up from
    if tenant_account(tenancy=tenancy).balance_minor >= cfg.auto_topup_threshold_minor:
        return 0
    if cfg.last_auto_topup_at and now - cfg.last_auto_topup_at < timedelta(
        hours=cfg.auto_topup_period_hours
    ):
        return 0
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spent = Payment.objects.filter(
        tenancy=tenancy,
        purpose=Payment.Purpose.AUTO_TOPUP,
        created_at__gte=month_start,
        status__in=LIVE,
    ).aggregate(s=Sum("amount_minor"))["s"]
    room = cfg.auto_topup_monthly_cap_minor - int(spent or 0)
    return cfg.auto_topup_amount_minor if cfg.auto_topup_amount_minor <= room else 0


def auto_topup_check(*, tenancy: Tenancy) -> Payment | None:
    amount = auto_topup_due(tenancy=tenancy)
    if amount <= 0:
        return None
    # Named after the previous auto top-up, so two checks racing for the same
    # period share one reference and charge once.
    cfg = PaymentSettings.objects.get(tenancy=tenancy)
    stamp = cfg.last_auto_topup_at.isoformat() if cfg.last_auto_topup_at else "first"
    try:
        return autopay_charge(
            tenancy=tenancy,
            amount_minor=amount,
            reference=f"auto-topup:{stamp}",
            purpose=Payment.Purpose.AUTO_TOPUP,
        )
    except PaymentError as exc:
        logger.warning("auto top-up of tenancy %s refused: %s", tenancy.pk, exc)
        return None


def auto_topups_run() -> int:
    """Check every running prepaid tenancy with auto top-up on; returns how many were charged."""
    charged = 0
    wanted = PaymentSettings.objects.filter(
        auto_topup_enabled=True, tenancy__in=Tenancy.objects.active()
    )
    for cfg in wanted.select_related("tenancy__unit__property", "tenancy__landlord"):
        if auto_topup_check(tenancy=cfg.tenancy) is not None:
            charged += 1
    return charged


@transaction.atomic
def payment_settings_update(
    *,
    tenancy: Tenancy,
    auto_topup_enabled: bool,
    threshold_minor: int,
    amount_minor: int,
    monthly_cap_minor: int,
    autopay_enabled: bool,
) -> PaymentSettings:
    cfg = payment_settings_for(tenancy=tenancy)
    cfg.auto_topup_enabled = auto_topup_enabled
    cfg.auto_topup_threshold_minor = threshold_minor
    cfg.auto_topup_amount_minor = amount_minor
    cfg.auto_topup_monthly_cap_minor = monthly_cap_minor
    cfg.autopay_enabled = autopay_enabled
    cfg.updated_at = timezone.now()
    cfg.save()
    return cfg


def saved_method_remove(*, method: SavedPaymentMethod) -> None:
    """Detach the card at the provider, then forget it here."""
    provider = get_provider()
    if provider is not None and provider.name == method.provider:
        provider.saved_method_remove(method=method)
    with transaction.atomic():
        SavedPaymentMethod.objects.filter(pk=method.pk).delete()
        if not SavedPaymentMethod.objects.filter(tenancy_id=method.tenancy_id).exists():
            PaymentSettings.objects.filter(tenancy_id=method.tenancy_id).update(
                auto_topup_enabled=False, autopay_enabled=False
            )


def autopays_run_due(*, now: datetime | None = None) -> int:
    """Postpaid autopay on the due date: charge each bill due by today (in its
    property's time zone) that autopay has not tried yet, for tenancies whose
    tenant turned autopay on. Each bill is tried once (``autopay_tried_at``); a
    declined card is not retried, the tenant pays by hand. Returns how many
    charges were asked for."""
    now = now or timezone.now()
    charged = 0
    waiting = Invoice.objects.filter(
        due_date__isnull=False,
        autopay_tried_at__isnull=True,
        tenancy__payment_settings__autopay_enabled=True,
    )
    zones = waiting.values_list("tenancy__unit__property__timezone", flat=True).distinct()
    for zone in sorted(set(zones)):
        today = timezone.localtime(now, zoneinfo.ZoneInfo(zone)).date()
        due = waiting.filter(tenancy__unit__property__timezone=zone, due_date__lte=today)
        for invoice_id in due.order_by("due_date", "pk").values_list("pk", flat=True):
            try:
                charged += autopay_for_invoice(invoice_id=invoice_id) is not None
            except PaymentError as exc:
                logger.warning("autopay of invoice %s refused: %s", invoice_id, exc)
            # Marked after the charge: a crash in between tries again, and
            # the charge is made at most once while a payment for the bill is live.
            Invoice.objects.filter(pk=invoice_id, autopay_tried_at__isnull=True).update(
                autopay_tried_at=now
            )
    return charged


def autopay_for_invoice(*, invoice_id: int) -> Payment | None:
    """Postpaid autopay: charge what is owed on a bill to the saved card.

    Nothing happens unless the tenant turned autopay on and saved a card; an
    amount below the smallest payment is left for the next bill.
    """
    invoice = Invoice.objects.select_related("tenancy__unit__property", "tenancy__landlord").get(
        pk=invoice_id
    )
    amount = invoice_amount_due(invoice=invoice)
    low, high = topup_limits()
    if amount < low:
        return None
    return autopay_charge(
        tenancy=invoice.tenancy,
        amount_minor=min(amount, high),
        reference=Payment.bill_reference(invoice),
    )


@task()
def autopay_invoice_task(invoice_id: int) -> None:
    autopay_for_invoice(invoice_id=invoice_id)
