"""A dispute from the tenant's phone to the admins' desk, against the real server.

The full flow: the tenant of Flat 7 (``dispute_world.py``: prepaid debt
left by a switch from postpaid, a cut-off scheduled a day ahead) raises a
dispute on a bill, which freezes the cut-off; the landlord contests, the
tenant escalates, and an admin reads the evidence timeline and resolves with
an adjustment: the tenant's balance moves by exactly that amount and the
ledger's checks hold. A second flow (the demo's tenant1, a usage period, a
photo) ends in a rejection. Each page fits a phone's width.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import FilePayload, Page, expect

from landlord.demo import DEMO_PASSWORD

from .test_phone_loop import _assert_fits_phone, _minor, _shot

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


def _json(out: str) -> dict[str, Any]:
    # The last line: the shell may print its own notes first.
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_dispute_on_a_bill_resolved_with_an_adjustment(
    submeter_server: str, phone: Any, server_manage: Any
) -> None:
    # given Flat 7: prepaid debt from its bills and a cut-off scheduled a day ahead
    world = _json(
        server_manage(
            "shell", "-c", "from tests.browser.dispute_world import dispute_world; dispute_world()"
        )
    )
    tenancy_id = world["tenancy"]

    def check() -> dict[str, Any]:
        return _json(
            server_manage(
                "shell",
                "-c",
                "from tests.browser.dispute_world import dispute_world_check; "
                f"dispute_world_check({tenancy_id})",
            )
        )

    tenant = _sign_in(phone(), submeter_server, "tenant7")
    expect(tenant).to_have_url(re.compile(rf"/tenant/{tenancy_id}/$"))
    home_url = tenant.url
    expect(tenant.get_by_test_id("alert")).to_have_attribute("data-kind", "cutoff")
    before = _minor(tenant.get_by_test_id("balance").inner_text())
    assert before == world["balance_minor"] < 0

    # when the tenant disputes £5.00 of the bill
    tenant.get_by_test_id("disputes-link").tap()
    tenant.get_by_role("link", name="Raise a dispute").tap()
    tenant.locator("#id_subject").select_option("invoice")
    tenant.locator("#id_invoice").select_option(str(world["invoice"]))
    tenant.locator("#id_category").select_option("price")
    tenant.locator("#id_message").fill("The standing charge on this bill is higher than agreed.")
    tenant.locator("#id_amount").fill("5.00")
    tenant.get_by_role("button", name="Raise the dispute").tap()
    expect(tenant.get_by_test_id("status")).to_contain_text("Waiting for the landlord")
    expect(tenant.get_by_test_id("freeze")).to_be_visible()
    case_url = tenant.url
    dispute_id = int(re.findall(r"/disputes/(\d+)/", case_url)[-1])

    # then the scheduled cut-off is frozen: no cut-off alert, the relay held on
    # (Flat 7's relay has not connected, so the page cannot say what it reports)
    tenant.goto(home_url)
    expect(tenant.get_by_test_id("alert")).to_have_attribute("data-kind", "no_credit")
    frozen = check()
    assert frozen["relay"] == "on"
    assert f"dispute #{dispute_id} open" in frozen["relay_reason"]

    # the landlord contests it
    landlord = _sign_in(phone(), submeter_server, "landlord")
    landlord.goto(case_url)
    landlord.locator("#id_response").select_option("contest")
    landlord.locator("#id_note").fill("The standing charge is the tariff's, as agreed.")
    landlord.get_by_role("button", name="Send response").tap()
    expect(landlord.get_by_test_id("status")).to_contain_text("Landlord responded")

    # the tenant escalates
    tenant.goto(case_url)
    expect(tenant.get_by_text("The standing charge is the tariff's, as agreed.")).to_be_visible()
    tenant.locator("#id_esc_note").fill("The agreement says otherwise.")
    tenant.get_by_role("button", name="Escalate to an admin").tap()
    expect(tenant.get_by_test_id("status")).to_contain_text("With an admin")

    # an admin opens it from the desk, reads the timeline and resolves with £5.00
    admin = _sign_in(phone(), submeter_server, "admin", admin=True)
    admin.goto(submeter_server + "/desk/")
    admin.get_by_role("link", name=re.compile(rf"Dispute #{dispute_id}\b")).first.tap()
    timeline = admin.get_by_test_id("timeline")
    expect(timeline).to_contain_text("The standing charge is the tariff's, as agreed.")
    expect(timeline).to_contain_text("The agreement says otherwise.")
    _assert_fits_phone(admin, "the desk's case page")
    admin.locator("#id_adjustment").fill("5.00")
    admin.locator("#id_resolve_note").fill("The agreement caps the standing charge.")
    admin.get_by_role("button", name="Resolve").tap()
    expect(admin.get_by_test_id("outcome")).to_contain_text("£5.00 credited")

    # then the tenant's balance moved by exactly £5.00, and the ledger holds
    tenant.goto(case_url)
    expect(tenant.get_by_test_id("outcome")).to_contain_text("The agreement caps")
    tenant.goto(home_url)
    assert _minor(tenant.get_by_test_id("balance").inner_text()) == before + 500
    after = check()
    assert after["balance_minor"] == before + 500
    assert after["ledger_problems"] == []
    # still in debt once the freeze lifts: a new cut-off notice, with the full day's notice
    expect(tenant.get_by_test_id("alert")).to_have_attribute("data-kind", "cutoff")
    assert after["relay"] == "on"
    _shot(tenant, "dispute-adjusted")


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
