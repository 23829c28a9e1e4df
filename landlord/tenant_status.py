"""What the tenant's page says about the supply: one line and at most one alert.

Pure functions of the unit's state as the selector read it, so every state
of the page can be tested without a database. The supply line says what the
supply *is* (the relay's report) and why; the alert says what the tenant can
do about it. Exactly one alert is chosen, the most urgent, so a new state
replaces the old instead of piling up beside it, and no alert repeats the
balance (the big number is the only place it is shown).
"""

from __future__ import annotations

from dataclasses import dataclass

from config.formats import clock, format_money
from payments.emergency import debt_recovery_share
from supply.cutoff import ScheduledCutoff, cutoff_amount_to_cancel
from supply.runway import duration_text, runway_hours


@dataclass(frozen=True)
class SupplyLine:
    state: str  # "on", "off" or "unknown": what the relay reported
    label: str  # "supply on"
    reason: str  # why, in the tenant's words ("" when nothing needs saying)


@dataclass(frozen=True)
class TenantAlert:
    kind: str  # a stable name for styling and tests
    tone: str  # "danger", "warn" or "ok"
    text: str
    # Read out at once by screen readers: only when the supply goes off.
    assertive: bool = False


@dataclass(frozen=True)
class SupplyFacts:
    """The inputs, plain: the relay's report and wish, the landlord's override,
    the balance and what protects the supply."""

    prepaid: bool
    reported: str
    desired: str
    override_state: str
    override_reason: str
    balance_minor: int | None
    currency: str
    low_threshold_minor: int
    emergency_debt_minor: int
    cutoff: ScheduledCutoff | None
    protected_reason: str  # Protections.blocking_reason()
    low_runway: bool  # an open low-runway alert
    restored_recently: bool  # the supply came back on within the hour
    tz: str

    @property
    def out_of_credit(self) -> bool:
        return self.prepaid and self.balance_minor is not None and self.balance_minor <= 0

    @property
    def off_by_landlord(self) -> bool:
        return self.override_state == "off"


def _cutoff_text(cutoff: ScheduledCutoff) -> str:
    return (
        f"scheduled off {clock(cutoff.at, cutoff.tz)} unless "
        f"{format_money(cutoff.amount_minor, cutoff.currency)} is added"
    )


def supply_line(f: SupplyFacts) -> SupplyLine:
    if f.reported not in ("on", "off"):
        # The meter has not said; what the server wants for the supply still holds.
        if f.off_by_landlord:
            why = f"switched off by your landlord: {f.override_reason}"
        elif f.desired == "off" and f.out_of_credit:
            why = "being switched off: no credit left"
        elif f.cutoff is not None:
            why = _cutoff_text(f.cutoff)
        else:
            why = "the meter has not reported it yet"
        return SupplyLine("unknown", "supply state unknown", why)
    if f.reported == "off":
        if f.off_by_landlord:
            return SupplyLine(
                "off", "supply off", f"switched off by your landlord: {f.override_reason}"
            )
        if f.desired == "on":
            return SupplyLine("off", "supply off", "switching back on now…")
        if f.out_of_credit:
            return SupplyLine("off", "supply off", "no credit left")
        return SupplyLine("off", "supply off", "")
    # The supply is on.
    if f.off_by_landlord:
        return SupplyLine(
            "on", "supply on", f"your landlord is switching it off: {f.override_reason}"
        )
    if f.desired == "off" and f.out_of_credit:
        return SupplyLine("on", "supply on", "switching off now: no credit left")
    if f.override_state == "on":
        return SupplyLine("on", "supply on", "kept on by your landlord")
    if f.cutoff is not None:
        return SupplyLine("on", "supply on", _cutoff_text(f.cutoff))
    if f.out_of_credit:
        if f.protected_reason:
            return SupplyLine("on", "supply on", "no credit left, but protected from disconnection")
        return SupplyLine("on", "supply on", "no credit left")
    if (
        f.prepaid
        and f.emergency_debt_minor > 0
        and f.balance_minor is not None
        and f.balance_minor <= f.emergency_debt_minor
    ):
        return SupplyLine("on", "supply on", "on emergency credit")
    return SupplyLine("on", "supply on", "")


def tenant_alert(f: SupplyFacts) -> TenantAlert | None:
    """The one alert the page shows, the most urgent first."""
    going_off = f.reported == "off" or f.desired == "off"
    if f.off_by_landlord and going_off:
        return TenantAlert(
            "landlord_off",
            "danger",
            "Your landlord has switched your supply off. A top-up does not switch it back "
            "on: please contact your landlord.",
            assertive=True,
        )
    if f.out_of_credit and going_off and f.balance_minor is not None:
        amount = format_money(cutoff_amount_to_cancel(f.balance_minor), f.currency)
        return TenantAlert(
            "off_no_credit",
            "danger",
            f"Your credit has run out. Top up at least {amount} to switch your supply back on.",
            assertive=True,
        )
    if f.out_of_credit and f.cutoff is not None:
        return TenantAlert(
            "cutoff",
            "danger",
            f"Your credit has run out. Top up before {clock(f.cutoff.at, f.cutoff.tz)} "
            "to keep your supply on.",
        )
    if f.out_of_credit:
        return TenantAlert(
            "no_credit",
            "warn",
            "Your credit has run out. What you use now is owed and comes off your next top-up.",
        )
    if not f.prepaid:
        return None
    low = f.balance_minor is not None and f.balance_minor < f.low_threshold_minor
    if low or f.low_runway:
        return TenantAlert("low", "warn", "Low credit: top up soon to keep your supply on.")
    if f.restored_recently and f.reported == "on":
        return TenantAlert("restored", "ok", "Your supply is back on.")
    return None


@dataclass(frozen=True)
class TopUpPreview:
    """Where a top-up goes before it is paid: the same split the ledger posts
    (payments.emergency.debt_recovery_share), and how long the credit then lasts."""

    amount_minor: int
    repay_minor: int
    credit_minor: int
    new_balance_minor: int
    lasts: str  # "about 4½ days" at the current usage, or ""
    currency: str

    @property
    def text(self) -> str:
        m = self.currency
        parts = f"{format_money(self.amount_minor, m)} → "
        if self.repay_minor:
            parts += f"{format_money(self.repay_minor, m)} repays emergency credit, "
        parts += f"{format_money(self.credit_minor, m)} credit"
        parts += f" · new balance {format_money(self.new_balance_minor, m)}"
        if self.lasts:
            parts += f", lasts {self.lasts}"
        return parts


def topup_preview(
    *,
    amount_minor: int,
    debt_minor: int,
    balance_minor: int,
    power_w: float | None,
    price_per_kwh_minor: float | None,
    currency: str,
) -> TopUpPreview:
    repay = debt_recovery_share(debt_minor=debt_minor, topup_minor=amount_minor)
    credit = amount_minor - repay
    new_balance = balance_minor + credit
    hours = (
        runway_hours(
            balance_minor=new_balance, power_w=power_w, price_per_kwh_minor=price_per_kwh_minor
        )
        if price_per_kwh_minor
        else None
    )
    return TopUpPreview(
        amount_minor=amount_minor,
        repay_minor=repay,
        credit_minor=credit,
        new_balance_minor=new_balance,
        lasts=duration_text(hours) if hours else "",
        currency=currency,
    )
