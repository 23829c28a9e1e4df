"""The usage chart on a phone (390 x 844, touch) against the real server: uPlot
draws today's half-hour bars, the kWh/money toggle redraws them, and a tap on
the chart says the value of the bar under the finger."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from landlord.demo import DEMO_PASSWORD
from tests.browser.conftest import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_usage_chart_on_a_phone(submeter_server: str, browser: Any) -> None:
    context = browser.new_context(**{**PHONE, "viewport": {"width": 390, "height": 844}})
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(submeter_server + "/")
        page.locator("#id_username").fill("tenant1")
        page.locator("#id_password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Sign in").tap()
        expect(page).to_have_url(re.compile(r"/tenant/\d+/$"))
        page.get_by_test_id("usage-link").tap()
        expect(page).to_have_url(re.compile(r"/tenant/\d+/usage/$"))
        chart = page.locator("[data-usage-chart][data-ready] canvas")
        expect(chart).to_have_count(1)
        box = chart.bounding_box()
        assert box is not None and box["width"] > 200
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"the usage page scrolls sideways at 390 px: {width} px"
        # Tap a bar: its value is said.
        picked = page.locator("[data-usage-picked]")
        page.locator("[data-usage-chart] .u-over").tap(position={"x": box["width"] * 0.5, "y": 100})
        expect(picked).to_contain_text(re.compile(r"\d\d:\d\d: (no data|[\d.]+ kWh)"))
        # Money: the same bar in pounds.
        page.get_by_label("Money").check()
        page.locator("[data-usage-chart] .u-over").tap(position={"x": box["width"] * 0.5, "y": 100})
        expect(picked).to_contain_text(re.compile(r"\d\d:\d\d: (no data|£[\d.,]+)"))
        assert errors == []
    finally:
        context.close()
