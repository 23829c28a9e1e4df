"""A form sent by htmx and refused comes back as a 422 (``config.htmx``), and the page's
script (``static/app.js``) swaps it in: the landlord sees the refused rows of a CSV
import in place, on the real server, in Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from landlord.demo import DEMO_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_refused_csv_rows_are_swapped_into_the_page(submeter_server: str, phone: Any) -> None:
    base = submeter_server
    page = phone().new_page()
    page.goto(base + "/accounts/login/")
    page.locator("#id_username").fill("landlord")
    page.locator("#id_password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    page.goto(base + "/landlord/setup/units/import/")
    page.evaluate("window.notReloaded = true")  # gone if the page were loaded again
    page.locator("#id_csv_text").fill("name,billing_mode\nFlat 99,monthly\n")
    with page.expect_response(lambda r: "/units/import/" in r.url) as answer:
        page.get_by_role("button", name="Check the rows").click()
    assert answer.value.status == 422
    expect(page.locator("#unit-import")).to_contain_text("Choose prepaid or postpaid")
    assert page.evaluate("window.notReloaded") is True
