"""Validation, estimation and editing (VEE) of cumulative register readings.

Pure rules: given the previous reading in the chain and a new one, what
energy (if any) lies between them, how it is known and which rule said so.
``meters.readings.readings_rate`` applies them; tests call them directly.

The chain is the readings of one meter in time order, from its baseline.
Every reading in the chain becomes the next baseline, including flagged
ones: a register that went backwards or jumped is where the meter now is,
and the energy across the bad step is simply not billed.

Rules (``Rule``), in the order they are checked:

=======================  ==========================================================
``duplicate``            seq already stored: ignored, nothing changes
``future``               taken more than FUTURE_TOLERANCE_SECONDS ahead: frame refused
``baseline``             first reading of a meter (or after a reset/replacement)
``before-baseline``      taken before the meter's baseline: stored, not used
``out-of-order``         arrived after a later reading: the step between its
                         neighbours is re-derived through it, each half by these
                         same rules, so arrival order never changes the result
``out-of-order-unused``  arrived late with a register outside its neighbours'
                         (or a rollover): stored, flagged, not used
``rollover``             register wrapped at the meter's register size: counted
``negative-delta``       register went backwards: flagged, never billed
``long-gap``             more than LONG_GAP_SECONDS since the last reading: the
                         energy is held with a reason, not spread over invented slots
``spike``                faster than MAX_PLAUSIBLE_POWER_W on average: held and flagged
``gap-estimated``        more than ESTIMATE_GAP_SECONDS since the last reading:
                         spread linearly, slots marked estimated
``actual``               a normal step
``meter-reset``          explicit event: old register's last value billed, new baseline
``meter-replaced``       explicit event: the old meter closes, the new one starts
=======================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from django.conf import settings


class Rule(StrEnum):
    DUPLICATE = "duplicate"
    FUTURE = "future"
    BASELINE = "baseline"
    BEFORE_BASELINE = "before-baseline"
    OUT_OF_ORDER = "out-of-order"
    OUT_OF_ORDER_UNUSED = "out-of-order-unused"
    ROLLOVER = "rollover"
    NEGATIVE = "negative-delta"
    LONG_GAP = "long-gap"
    SPIKE = "spike"
    GAP_ESTIMATED = "gap-estimated"
    ACTUAL = "actual"
    RESET = "meter-reset"
    REPLACED = "meter-replaced"


# Steps whose energy is spread over slots and billed.
BILLED = {Rule.ACTUAL, Rule.ROLLOVER, Rule.GAP_ESTIMATED, Rule.OUT_OF_ORDER, Rule.RESET}
# Steps whose energy is kept in a held interval with a reason, not billed.
HELD = {Rule.SPIKE, Rule.LONG_GAP}


@dataclass(frozen=True)
class Limits:
    max_power_w: int
    estimate_gap_s: int
    long_gap_s: int
    register_max_wh: int | None = None

    @classmethod
    def from_settings(cls, register_max_wh: int | None = None) -> Limits:
        cfg = settings.SUBMETER
        return cls(
            max_power_w=int(cfg["MAX_PLAUSIBLE_POWER_W"]),
            estimate_gap_s=int(cfg["ESTIMATE_GAP_SECONDS"]),
            long_gap_s=int(cfg["LONG_GAP_SECONDS"]),
            register_max_wh=register_max_wh,
        )


@dataclass(frozen=True)
class Step:
    rule: Rule
    energy_wh: int  # energy across the step (0 when none can be known)
    note: str = ""

    @property
    def billed(self) -> bool:
        return self.rule in BILLED

    @property
    def held(self) -> bool:
        return self.rule in HELD

    @property
    def flagged(self) -> bool:
        """The reading itself is suspect (shown to the landlord, reported to the device)."""
        return self.rule in (Rule.NEGATIVE, Rule.SPIKE, Rule.OUT_OF_ORDER_UNUSED)

    @property
    def estimated(self) -> bool:
        return self.rule == Rule.GAP_ESTIMATED


def _plausible(energy_wh: int, seconds: float, limits: Limits) -> bool:
    return energy_wh <= limits.max_power_w * max(seconds, 1.0) / 3600


def step(
    *, prev_at: datetime, prev_wh: int, at: datetime, register_wh: int, limits: Limits
) -> Step:
    """Classify the step from the previous reading in the chain to a new one."""
    seconds = (at - prev_at).total_seconds()
    energy = register_wh - prev_wh
    rule = Rule.ACTUAL
    if energy < 0:
        size = limits.register_max_wh
        wrapped = register_wh + size - prev_wh if size else -1
        if size and prev_wh < size and register_wh < size and _plausible(wrapped, seconds, limits):
            energy, rule = wrapped, Rule.ROLLOVER
        else:
            return Step(
                Rule.NEGATIVE, 0, f"register went back {-energy} Wh; not billed, new baseline"
            )
    if seconds > limits.long_gap_s:
        hours = seconds / 3600
        return Step(
            Rule.LONG_GAP,
            energy,
            f"no readings for {hours:.1f} h: {energy} Wh held, not spread over the gap",
        )
    if not _plausible(energy, seconds, limits):
        power = energy * 3600 / max(seconds, 1.0)
        return Step(
            Rule.SPIKE,
            energy,
            f"{energy} Wh in {seconds:.0f} s is {power / 1000:.0f} kW on average, "
            f"above {limits.max_power_w / 1000:.0f} kW: held",
        )
    if rule == Rule.ROLLOVER:
        return Step(rule, energy, f"register rolled over at {limits.register_max_wh} Wh")
    if seconds > limits.estimate_gap_s:
        return Step(
            Rule.GAP_ESTIMATED,
            energy,
            f"{seconds / 60:.0f} min since the last reading: spread evenly, estimated",
        )
    return Step(Rule.ACTUAL, energy)
