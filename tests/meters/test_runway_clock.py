"""The tenant's runway in clock time: plurals, never a past time, protected hours."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supply.alerts import runway_message
from supply.protections import Protections
from supply.runway import duration_text, runway_end, runway_until_text

LONDON = "Europe/London"
# Tuesday 1 Dec 2026, 10:07:31 in London (GMT in winter).
NOW = datetime(2026, 12, 1, 10, 7, 31, tzinfo=UTC)
ALWAYS = Protections(tz=LONDON, days="1234567", start=time(0), end=time(0), notice=timedelta(0))


@pytest.mark.parametrize(
    ("hours", "text"),
    [
        (0.001, "about 1 minute"),
        (0.5, "about 30 minutes"),
        (1, "about 1 hour"),
        (1.99, "about 1 hour"),
        (2, "about 2 hours"),
        (47.9, "about 47 hours"),
        (48, "about 2 days"),
        (108, "about 4½ days"),
        (24 * 9 + 23, "about 9½ days"),
    ],
)
def test_durations_have_correct_plurals(hours, text):
    assert duration_text(hours) == text


def test_a_short_runway_reads_as_a_time_today_rounded_up():
    text = runway_until_text(hours=0.001, now=NOW, protections=ALWAYS)
    assert text == "Lasts until about 10:15 today (about 1 minute) at current usage."


def test_a_longer_runway_names_the_day():
    text = runway_until_text(hours=36, now=NOW, protections=ALWAYS)
    assert text == "Lasts until about Wed 22:15 (about 36 hours) at current usage."
    text = runway_until_text(hours=24 * 10, now=NOW, protections=ALWAYS)
    assert text.startswith("Lasts until about Fri 11 Dec 10:15 (about 10 days)")


@given(
    hours=st.floats(min_value=1e-6, max_value=24 * 60),
    seconds=st.integers(min_value=0, max_value=3 * 365 * 86400),
)
def test_the_runway_end_is_never_before_the_estimate_nor_in_the_past(hours, seconds):
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=seconds % 7)
    end = runway_end(now=now, hours=hours, tz=LONDON)
    assert end >= now + timedelta(hours=hours) > now
    assert end - (now + timedelta(hours=hours)) < timedelta(minutes=15)
    assert end.astimezone(zoneinfo.ZoneInfo(LONDON)).minute % 15 == 0


def test_protected_hours_say_when_the_supply_could_go_off():
    # Working days 09:00-15:00 and a day's notice: credit that runs out on Friday
    # evening cannot lead to a cut-off before Monday morning.
    friday = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    p = Protections(tz=LONDON)  # the defaults
    text = runway_until_text(hours=6, now=friday, protections=p)
    assert text == (
        "Lasts until about 16:00 today (about 6 hours) at current usage. "
        "The supply could not be switched off before Mon 09:00."
    )


def test_a_protected_household_is_told_so():
    p = Protections(tz=LONDON, vulnerable=True)
    text = runway_until_text(hours=6, now=NOW, protections=p)
    assert text.endswith("Your supply is protected from automatic disconnection.")


def test_no_protected_hours_line_when_the_cut_off_could_follow_at_once():
    assert "could not be switched off" not in runway_until_text(
        hours=3, now=NOW, protections=ALWAYS
    )


def test_the_alert_text_rounds_the_run_out_up_too():
    # 18:33 used to read "~18:30": a time already past when the alert arrived.
    runs_out = datetime(2026, 12, 2, 18, 33, 12, tzinfo=UTC)
    text = runway_message(runs_out=runs_out, protections=ALWAYS)
    assert text.startswith("At current usage your credit lasts until Wed ~18:45")
