"""A dispute from the tenant's phone to the admins' desk, against the real server.

The demo's tenant1 raises a dispute about yesterday's usage with a photo, the
landlord contests it, the tenant escalates it and an admin rejects it on the
desk; each page fits a phone's width.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import FilePayload, Page, expect

from landlord.demo import DEMO_PASSWORD

from .test_phone_loop import _assert_fits_phone, _shot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _sign_in(context: Any, base_url: str, username: str, *, admin: bool = False) -> Page:
    page = context.new_page()
    page.goto(base_url + "/accounts/login/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").tap()
    if admin:  # the home sends a platform admin to the Django admin
        expect(page).to_have_url(re.compile(r"/admin/$"))
    else:
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return page


def test_dispute_from_phone_to_desk(submeter_server: str, phone: Any) -> None:
    # given the tenant on their unit page
    tenant = _sign_in(phone(), submeter_server, "tenant1")
    tenant.get_by_test_id("disputes-link").tap()
    expect(tenant).to_have_url(re.compile(r"/disputes/$"))
    tenant.get_by_role("link", name="Raise a dispute").tap()
    expect(tenant).to_have_url(re.compile(r"/disputes/new/$"))
    _assert_fits_phone(tenant, "the new dispute form")
    # when they dispute a period with a photo
    tenant.locator("#id_subject").select_option("period")
    tenant.locator("#id_period_start").fill("2026-01-01")
    tenant.locator("#id_period_end").fill("2026-01-31")
    tenant.locator("#id_category").select_option("reading")
    tenant.locator("#id_message").fill("The meter showed far less than I was charged for.")
    photo: FilePayload = {"name": "meter.png", "mimeType": "image/png", "buffer": PNG}
    tenant.locator("#id_files").set_input_files(files=[photo])
    tenant.get_by_role("button", name="Raise the dispute").tap()
    # then the case page says who acts next, shows the photo and the freeze
    expect(tenant.get_by_test_id("status")).to_contain_text("Waiting for the landlord")
    expect(tenant.get_by_role("link", name="meter.png")).to_be_visible()
    expect(tenant.get_by_test_id("freeze")).to_be_visible()
    _assert_fits_phone(tenant, "the case page")
    case_url = tenant.url
    _shot(tenant, "dispute-tenant")

    # the landlord contests it
    landlord = _sign_in(phone(), submeter_server, "landlord")
    landlord.goto(case_url)
    landlord.locator("#id_response").select_option("contest")
    landlord.locator("#id_note").fill("The readings are consistent with last year.")
    landlord.get_by_role("button", name="Send response").tap()
    expect(landlord.get_by_test_id("status")).to_contain_text("Landlord responded")

    # the tenant escalates
    tenant.reload()
    expect(tenant.get_by_text("The readings are consistent with last year.")).to_be_visible()
    tenant.locator("#id_esc_note").fill("Please look at the readings.")
    tenant.get_by_role("button", name="Escalate to an admin").tap()
    expect(tenant.get_by_test_id("status")).to_contain_text("With an admin")

    # an admin finds it on the desk and rejects it with reasons
    admin = _sign_in(phone(), submeter_server, "admin", admin=True)
    admin.goto(submeter_server + "/desk/")
    expect(admin.get_by_test_id("queue")).to_be_visible()
    _assert_fits_phone(admin, "the desk")
    admin.get_by_role("link", name=re.compile(r"Dispute #\d+")).first.tap()
    expect(admin.get_by_test_id("timeline")).to_be_visible()
    admin.locator("#id_reject_note").fill("The meter's readings agree with the bill.")
    admin.get_by_role("button", name="Reject").tap()
    expect(admin.get_by_test_id("outcome")).to_contain_text("Rejected")
    _shot(admin, "dispute-desk")

    tenant.reload()
    expect(tenant.get_by_test_id("outcome")).to_contain_text("The meter's readings agree")
