"""Prepaid or postpaid: advice for the landlord, per tenancy. Pure; never acted on.

Postpaid fits a tenant whose usage is steady and who pays on time; prepaid fits
usage that swings, payments that fail or come late, and arrears. The advice
weighs four signs over plain facts (``payments.selectors.tenancy_advice``
fetches them) and returns the suggested mode with each reason it found, as
data: the page words it. Nothing here changes a unit: the landlord decides,
on the billing-mode page.

Signs (each pointing one way, with a weight):

- **usage stability**: the coefficient of variation (standard deviation over
  mean) of daily energy over the last 60 days, on at least
  ``MIN_USAGE_DAYS`` days: steady at most ``STEADY_CV``, variable from
  ``VARIABLE_CV``;
- **bills paid late** (bills due by now: paid after the due date, or still
  unpaid): none on at least two bills points to postpaid; ``LATE_BILLS``
  or more, or a third of them, to prepaid;
- **failed payments**: ``FAILED_PAYMENTS`` or more, or a quarter of the
  attempts, point to prepaid;
- **top-up regularity** (prepaid): at least ``MIN_TOPUPS`` top-ups whose gaps
  vary little (coefficient of variation at most ``REGULAR_GAPS_CV``) point to
  postpaid; gaps varying more than ``IRREGULAR_GAPS_CV``, to prepaid;
- **arrears** (owed past the due date, or a prepaid debt): prepaid, weight 2.

The suggestion is the side with more weight; a tie keeps the current mode.
With no sign at all (a new tenancy) the advice says there is not enough
history yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

PREPAID = "prepaid"
POSTPAID = "postpaid"

MIN_USAGE_DAYS = 14
STEADY_CV = 0.35
VARIABLE_CV = 0.7
LATE_BILLS = 2
FAILED_PAYMENTS = 2
MIN_TOPUPS = 3
REGULAR_GAPS_CV = 0.5
IRREGULAR_GAPS_CV = 1.0
ARREARS_WEIGHT = 2


@dataclass(frozen=True)
class History:
    """What the advice is drawn from, all plain numbers."""

    mode: str  # the unit's mode now
    daily_wh: Sequence[int] = ()  # energy per local day with readings, last 60 days
    bills_due: int = 0  # bills whose due date has passed
    bills_late: int = 0  # of those, paid after the due date or still unpaid
    payments_tried: int = 0  # payments attempted (succeeded or failed)
    payments_failed: int = 0
    topup_gap_days: Sequence[float] = ()  # days between successive top-ups
    arrears_minor: int = 0  # owed past due, or a prepaid debt


@dataclass(frozen=True)
class Reason:
    """One sign, which way it points, and the figures behind it (for the page)."""

    kind: str  # steady_usage, variable_usage, bills_on_time, bills_late,
    # payments_failed, regular_topups, irregular_topups, arrears
    points_to: str
    weight: int = 1
    value: float = 0.0  # the figure: a variation in percent, a count, an amount
    of: int = 0  # out of how many, where that applies

    @property
    def minor(self) -> int:
        """The figure as an amount in minor units (arrears)."""
        return int(self.value)


@dataclass(frozen=True)
class Advice:
    suggested: str | None  # None: not enough history to suggest anything
    current: str
    reasons: tuple[Reason, ...] = field(default_factory=tuple)

    @property
    def is_change(self) -> bool:
        return self.suggested is not None and self.suggested != self.current

    @property
    def supporting(self) -> tuple[Reason, ...]:
        """The reasons for the suggestion, heaviest first."""
        return tuple(
            sorted(
                (r for r in self.reasons if r.points_to == self.suggested),
                key=lambda r: -r.weight,
            )
        )

    @property
    def against(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.points_to != self.suggested)


def variation(values: Sequence[float]) -> float | None:
    """Coefficient of variation (population standard deviation / mean), or None
    when it means nothing (fewer than two values, or a mean of zero)."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    if mean <= 0:
        return None
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return math.sqrt(var) / mean


def _usage(history: History) -> Reason | None:
    if len(history.daily_wh) < MIN_USAGE_DAYS:
        return None
    cv = variation([float(v) for v in history.daily_wh])
    if cv is None:
        return None
    if cv <= STEADY_CV:
        return Reason("steady_usage", POSTPAID, value=round(cv * 100), of=len(history.daily_wh))
    if cv >= VARIABLE_CV:
        return Reason("variable_usage", PREPAID, value=round(cv * 100), of=len(history.daily_wh))
    return None


def _bills(history: History) -> Reason | None:
    if history.bills_due <= 0:
        return None
    late = history.bills_late
    if late >= LATE_BILLS or (late and late * 3 >= history.bills_due):
        return Reason("bills_late", PREPAID, value=late, of=history.bills_due)
    if late == 0 and history.bills_due >= 2:
        return Reason("bills_on_time", POSTPAID, value=history.bills_due, of=history.bills_due)
    return None


def _payments(history: History) -> Reason | None:
    failed = history.payments_failed
    if failed >= FAILED_PAYMENTS or (failed and failed * 4 >= history.payments_tried):
        return Reason("payments_failed", PREPAID, value=failed, of=history.payments_tried)
    return None


def _topups(history: History) -> Reason | None:
    gaps = [float(g) for g in history.topup_gap_days]
    if len(gaps) + 1 < MIN_TOPUPS:
        return None
    cv = variation(gaps)
    if cv is None:
        return None
    if cv <= REGULAR_GAPS_CV:
        mean = sum(gaps) / len(gaps)
        return Reason("regular_topups", POSTPAID, value=round(mean, 1), of=len(gaps) + 1)
    if cv > IRREGULAR_GAPS_CV:
        return Reason("irregular_topups", PREPAID, value=round(cv * 100), of=len(gaps) + 1)
    return None


def _arrears(history: History) -> Reason | None:
    if history.arrears_minor > 0:
        return Reason("arrears", PREPAID, weight=ARREARS_WEIGHT, value=float(history.arrears_minor))
    return None


def advise(history: History) -> Advice:
    """The suggested mode for a tenancy and why. Never acted on automatically."""
    found = [
        reason
        for reason in (
            _arrears(history),
            _bills(history),
            _payments(history),
            _usage(history),
            _topups(history),
        )
        if reason is not None
    ]
    if not found:
        return Advice(suggested=None, current=history.mode)
    postpaid = sum(r.weight for r in found if r.points_to == POSTPAID)
    prepaid = sum(r.weight for r in found if r.points_to == PREPAID)
    if postpaid > prepaid:
        suggested = POSTPAID
    elif prepaid > postpaid:
        suggested = PREPAID
    else:
        suggested = history.mode
    return Advice(suggested=suggested, current=history.mode, reasons=tuple(found))
