"""The landlord's pages on a phone (360 px) against the real server: the unit
page draws its usage chart (the tenant's chart code, fed from the page), and the
CSV import checks and adds rows through htmx without reloading the page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from landlord.demo import DEMO_PASSWORD
from tests.browser.conftest import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _sign_in(page: Any, base: str) -> None:
    page.goto(base + "/")
    page.locator("#id_username").fill("landlord")
    page.locator("#id_password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").tap()
    expect(page).to_have_url(re.compile(r"/landlord/units/$"))


def test_unit_page_chart_and_htmx_import_on_a_phone(submeter_server: str, browser: Any) -> None:
    context = browser.new_context(**PHONE)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        _sign_in(page, submeter_server)
        page.get_by_role("link", name=re.compile("Flat 1")).first.tap()
        expect(page).to_have_url(re.compile(r"/landlord/units/\d+/$"))
        chart = page.locator("#unit-usage-chart[data-ready] canvas")
        expect(chart).to_have_count(1)
        page.get_by_label("Money").check()
        expect(chart).to_have_count(1)
        page.get_by_role("link", name="Week", exact=True).tap()
        expect(page).to_have_url(re.compile(r"period=week"))
        expect(page.locator("#unit-usage-chart[data-ready] canvas")).to_have_count(1)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 360, f"the unit page scrolls sideways at 360 px: {width} px"
        # The CSV import: checked and added without a page load (a mark on the
        # window survives until the set-up page it ends on).
        page.goto(submeter_server + "/landlord/setup/units/import/")
        page.evaluate("() => { window.__stayed = true; }")
        page.locator("#id_csv_text").fill("name,billing_mode\nFlat 90,prepaid\nFlat 91,monthly\n")
        page.get_by_role("button", name="Check the rows").tap()
        expect(page.locator("#preview")).to_contain_text("Choose prepaid or postpaid")
        assert page.evaluate("() => window.__stayed === true")
        expect(page.locator("header.top")).to_have_count(1)  # swapped in place, page kept
        page.locator("#id_csv_text").fill("name,billing_mode\nFlat 90,prepaid\nFlat 91,postpaid\n")
        page.get_by_role("button", name="Check the rows").tap()
        page.get_by_role("button", name="Add these 2 units").tap()
        expect(page).to_have_url(re.compile(r"/landlord/setup/$"))
        expect(page.get_by_text("2 units were added")).to_be_visible()
        assert errors == []
    finally:
        context.close()
