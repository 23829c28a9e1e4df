"""The runway arithmetic shared by the low-runway alert and the tenant's page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from supply.runway import mean_power_w, runway_forecast, runway_hours, runway_text

NOON = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)


def test_mean_power_between_two_register_readings():
    later = NOON + timedelta(minutes=30)
    assert mean_power_w(start_at=NOON, start_wh=1000, end_at=later, end_wh=1500) == 1000
    assert mean_power_w(start_at=NOON, start_wh=1000, end_at=NOON, end_wh=1500) is None
    assert mean_power_w(start_at=NOON, start_wh=1500, end_at=later, end_wh=1000) is None


def test_runway_hours():
    # 1 kW at 30 per kWh costs 30 an hour: 300 lasts ten hours.
    assert runway_hours(balance_minor=300, power_w=1000, price_per_kwh_minor=30) == 10
    assert runway_hours(balance_minor=0, power_w=1000, price_per_kwh_minor=30) == 0
    assert runway_hours(balance_minor=300, power_w=None, price_per_kwh_minor=30) is None
    assert runway_hours(balance_minor=300, power_w=1000, price_per_kwh_minor=0) is None


def test_the_forecast_is_the_runway_in_clock_time():
    assert runway_forecast(
        balance_minor=300, power_w=1000, price_per_kwh_minor=30, now=NOON
    ) == NOON + timedelta(hours=10)
    assert runway_forecast(balance_minor=-5, power_w=1000, price_per_kwh_minor=30, now=NOON) == NOON


@pytest.mark.parametrize(
    ("hours", "text"),
    [
        (0.001, "about 1 minute left at current usage"),
        (0.5, "about 30 minutes left at current usage"),
        (1, "about 1 hour left at current usage"),
        (47.9, "about 47 hours left at current usage"),
        (48, "about 2 days left at current usage"),
        (24 * 9 + 23, "about 9 days left at current usage"),
    ],
)
def test_runway_text(hours, text):
    assert runway_text(hours) == text
