"""Read-only views of disputes: the admins' queue and a case's evidence timeline.

The timeline merges everything recorded about the unit over the disputed
period into one time-ordered list: a fixed number of queries whatever the
period's length (one per kind of record), each kind capped at ``LIMIT`` rows.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.formats import format_money
from meters.models import Alert, CutoffNotice, Interval, Reading, RelayCommand
from payments.models import Dispute as Chargeback
from payments.models import Payment, Posting, Refund
from payments.rating import round_half_up
from payments.services import DISPUTE_FINAL

from .models import Dispute, DisputeMessage

LIMIT = 500


@dataclass
class TimelineItem:
    at: datetime
    kind: str
    title: str
    detail: str = ""
    flag: str = ""
    message: DisputeMessage | None = None


@dataclass
class Timeline:
    start: datetime
    end: datetime
    items: list[TimelineItem] = field(default_factory=list)
    capped: list[str] = field(default_factory=list)


def dispute_window(dispute: Dispute) -> tuple[datetime, datetime]:
    """The period the evidence is gathered over (aware datetimes)."""
    tz = zoneinfo.ZoneInfo(dispute.unit.property.timezone)
    now = timezone.now()

    def local(day: object) -> datetime:
        return datetime.combine(day, time(0), tz)  # type: ignore[arg-type]

    if dispute.invoice is not None:
        return local(dispute.invoice.period_start), local(dispute.invoice.period_end)
    if dispute.period_start is not None and dispute.period_end is not None:
        return local(dispute.period_start), local(dispute.period_end + timedelta(days=1))
    if dispute.payment is not None:
        at = dispute.payment.created_at
        return at - timedelta(days=2), min(at + timedelta(days=2), now)
    if dispute.cutoff_notice is not None:
        notice = dispute.cutoff_notice
        end = (notice.closed_at or now) + timedelta(days=1)
        return notice.noticed_at - timedelta(days=2), min(end, now)
    return dispute.created_at - timedelta(days=3), dispute.created_at


def _money(minor: int, currency: str) -> str:
    return format_money(minor, currency)


def dispute_timeline(*, dispute: Dispute) -> Timeline:
    start, end = dispute_window(dispute)
    timeline = _evidence(
        landlord_id=dispute.landlord_id,
        unit_id=dispute.unit_id,
        tenancy_id=dispute.tenancy_id,
        currency=dispute.currency,
        start=start,
        end=end,
    )
    for m in dispute_messages(dispute=dispute):
        timeline.items.append(
            TimelineItem(
                m.created_at, "message", f"{m.get_role_display()} · {m.step}", m.body, message=m
            )
        )
    timeline.items.sort(key=lambda item: item.at)
    return timeline


def chargeback_timeline(*, chargeback: Chargeback) -> Timeline:
    """A chargeback's payment and the unit around it: from two days before the
    payment to now (at most 60 days)."""
    payment = chargeback.payment
    start = payment.created_at - timedelta(days=2)
    end = min(timezone.now(), start + timedelta(days=60))
    return _evidence(
        landlord_id=chargeback.landlord_id,
        unit_id=payment.tenancy.unit_id,
        tenancy_id=payment.tenancy_id,
        currency=chargeback.currency,
        start=start,
        end=end,
    )


def _evidence(
    *,
    landlord_id: int,
    unit_id: int,
    tenancy_id: int,
    currency: str,
    start: datetime,
    end: datetime,
) -> Timeline:
    cur = currency
    timeline = Timeline(start=start, end=end)
    items = timeline.items

    def capped(rows: Sequence[object], what: str) -> None:
        if len(rows) >= LIMIT:
            timeline.capped.append(what)

    readings = list(
        Reading.objects.filter(meter__unit_id=unit_id, taken_at__gte=start, taken_at__lt=end)
        .select_related("meter")
        .order_by("taken_at")[:LIMIT]
    )
    capped(readings, "readings")
    for r in readings:
        flag = "" if r.quality == Reading.Quality.ACTUAL else r.get_quality_display()
        rule = f"rule {r.rule}" if r.rule else ""
        items.append(
            TimelineItem(
                r.taken_at,
                "reading",
                f"Reading {r.register_wh} Wh (meter {r.meter.serial}, #{r.seq})",
                "; ".join(x for x in (rule, r.note) if x),
                flag,
            )
        )
    intervals = list(
        Interval.objects.filter(meter__unit_id=unit_id, start__gte=start, start__lt=end).order_by(
            "start"
        )[:LIMIT]
    )
    capped(intervals, "half-hour prices")
    for i in intervals:
        price = _money(round_half_up(i.gross_sub), cur) if i.gross_sub is not None else "not priced"
        lines = ", ".join(
            f"{line[4]} Wh at {line[3]}/kWh{f' ({line[1]})' if line[1] else ''}"
            for line in i.lines
            if isinstance(line, list) and len(line) >= 5
        )
        flag = "" if i.quality == Interval.Quality.ACTUAL else i.get_quality_display()
        detail = "; ".join(
            x for x in (lines, i.rule and f"rule {i.rule}", i.note, i.held_reason) if x
        )
        items.append(
            TimelineItem(
                i.start,
                "interval",
                f"{i.get_kind_display()} {i.energy_wh} Wh: {price}",
                detail,
                flag,
            )
        )
    postings = list(
        Posting.objects.filter(landlord_id=landlord_id)
        .filter(Q(debit__tenancy_id=tenancy_id) | Q(credit__tenancy_id=tenancy_id))
        .filter(transaction__created_at__gte=start, transaction__created_at__lt=end)
        .select_related("transaction", "credit")
        .order_by("transaction__created_at", "pk")[:LIMIT]
    )
    capped(postings, "ledger postings")
    for p in postings:
        sign = "+" if p.credit.tenancy_id == tenancy_id else "\u2212"
        energy = f" · {p.energy_wh} Wh" if p.energy_wh else ""
        items.append(
            TimelineItem(
                p.transaction.created_at,
                "posting",
                f"Ledger: {p.transaction.get_kind_display()} {sign}{_money(p.amount_minor, cur)}",
                f"{p.transaction.memo}{energy}",
            )
        )
    for pay in Payment.objects.filter(
        tenancy_id=tenancy_id, created_at__gte=start, created_at__lt=end
    ).order_by("created_at")[:LIMIT]:
        items.append(
            TimelineItem(
                pay.created_at,
                "payment",
                f"Payment {_money(pay.amount_minor, pay.currency)}: {pay.get_status_display()}",
                f"{pay.get_purpose_display()} {pay.reference}".strip(),
            )
        )
    for refund in Refund.objects.filter(
        payment__tenancy_id=tenancy_id, created_at__gte=start, created_at__lt=end
    ).order_by("created_at")[:LIMIT]:
        items.append(
            TimelineItem(
                refund.created_at,
                "refund",
                f"Refund {_money(refund.amount_minor, cur)}: {refund.get_status_display()}",
                refund.reason,
            )
        )
    for cb in Chargeback.objects.filter(
        payment__tenancy_id=tenancy_id, created_at__gte=start, created_at__lt=end
    ).order_by("created_at")[:LIMIT]:
        items.append(
            TimelineItem(
                cb.created_at,
                "chargeback",
                f"Chargeback {_money(cb.amount_minor, cb.currency)}: {cb.status}",
                cb.reason,
            )
        )
    for c in (
        RelayCommand.objects.filter(
            device__unit_id=unit_id, created_at__gte=start, created_at__lt=end
        )
        .select_related("device")
        .order_by("created_at")[:LIMIT]
    ):
        acked = f", acknowledged {c.acked_at:%d %b %H:%M:%S}" if c.acked_at else ""
        items.append(
            TimelineItem(
                c.created_at,
                "relay",
                f"Relay {c.state} (gen {c.generation}, {c.get_source_display().lower()}): "
                f"{c.get_status_display()}{acked}",
                f"{c.device.ident}: {c.reason}",
            )
        )
    for n in CutoffNotice.objects.filter(
        tenancy_id=tenancy_id, noticed_at__gte=start, noticed_at__lt=end
    ).order_by("noticed_at")[:LIMIT]:
        detail = f"earliest {n.earliest_at:%d %b %H:%M}" if n.earliest_at else "no time allowed"
        if n.cut_at:
            detail += f"; cut {n.cut_at:%d %b %H:%M}"
        if n.closed_at:
            detail += f"; closed: {n.close_reason}"
        items.append(
            TimelineItem(
                n.noticed_at,
                "notice",
                f"Cut-off notice at balance {_money(n.balance_minor, cur)} ({n.get_status_display()})",
                detail,
            )
        )
    for a in Alert.objects.filter(
        unit_id=unit_id, created_at__gte=start, created_at__lt=end
    ).order_by("created_at")[:LIMIT]:
        items.append(
            TimelineItem(
                a.created_at, "alert", f"Alert to {a.audience}: {a.get_kind_display()}", a.message
            )
        )
    items.sort(key=lambda item: item.at)
    return timeline


def dispute_messages(*, dispute: Dispute) -> list[DisputeMessage]:
    return list(
        DisputeMessage.objects.filter(dispute_id=dispute.pk)
        .select_related("author")
        .prefetch_related("attachments")
        .order_by("created_at", "pk")
    )


# --- the desk queue -------------------------------------------------------------------


@dataclass
class QueueRow:
    kind: str  # "dispute" or "chargeback"
    pk: int
    due_at: datetime | None
    status: str
    landlord: str
    unit: str
    amount: str
    assigned_to: str
    opened_at: datetime

    @property
    def overdue(self) -> bool:
        return self.due_at is not None and self.due_at < timezone.now()


CHARGEBACKS = "chargebacks"


def desk_queue(
    *,
    user: AbstractBaseUser,
    status: str = "",
    landlord_id: int | None = None,
    mine: bool = False,
    limit: int = 200,
) -> list[QueueRow]:
    """Unresolved disputes and chargebacks, the nearest deadline first."""
    rows: list[QueueRow] = []
    if status != CHARGEBACKS:
        disputes = Dispute.objects.select_related("landlord", "unit", "assigned_to")
        disputes = disputes.filter(status=status) if status else disputes.unresolved()
        if landlord_id:
            disputes = disputes.filter(landlord_id=landlord_id)
        if mine:
            disputes = disputes.filter(assigned_to_id=user.pk)
        for d in disputes.order_by("due_at", "pk")[:limit]:
            rows.append(
                QueueRow(
                    kind="dispute",
                    pk=d.pk,
                    due_at=d.due_at,
                    status=d.get_status_display(),
                    landlord=d.landlord.name,
                    unit=d.unit.name,
                    amount=_money(d.amount_minor, d.currency) if d.amount_minor else "—",
                    assigned_to=d.assigned_to.get_username() if d.assigned_to else "",
                    opened_at=d.created_at,
                )
            )
    if status in ("", CHARGEBACKS) and not mine:
        chargebacks = Chargeback.objects.exclude(status__in=DISPUTE_FINAL).select_related(
            "landlord", "payment__tenancy__unit"
        )
        if landlord_id:
            chargebacks = chargebacks.filter(landlord_id=landlord_id)
        for cb in chargebacks.order_by("evidence_due_by", "pk")[:limit]:
            rows.append(
                QueueRow(
                    kind="chargeback",
                    pk=cb.pk,
                    due_at=cb.evidence_due_by,
                    status=f"Chargeback: {cb.status}",
                    landlord=cb.landlord.name,
                    unit=cb.payment.tenancy.unit.name,
                    amount=_money(cb.amount_minor, cb.currency),
                    assigned_to="",
                    opened_at=cb.created_at,
                )
            )
    far = timezone.now() + timedelta(days=36500)
    rows.sort(key=lambda r: (r.due_at or far, r.opened_at))
    return rows[:limit]


@dataclass(frozen=True)
class RefundablePayment:
    payment: Payment
    refundable_minor: int


def refundable_payments(*, dispute: Dispute) -> list[RefundablePayment]:
    """The tenancy's succeeded payments with what may still be refunded of each,
    the dispute's own payment first (for the desk's refund form)."""
    payments = list(
        Payment.objects.filter(tenancy_id=dispute.tenancy_id, status=Payment.Status.SUCCEEDED)
        .annotate(
            refunded=Coalesce(
                Sum(
                    "refunds__amount_minor",
                    filter=~Q(refunds__status__in=[Refund.Status.FAILED, Refund.Status.CANCELED]),
                ),
                0,
            )
        )
        .order_by("-created_at")[:30]
    )
    rows = [RefundablePayment(p, p.amount_minor - p.refunded) for p in payments]
    rows.sort(key=lambda r: r.payment.pk != dispute.payment_id)
    return [r for r in rows if r.refundable_minor > 0]
