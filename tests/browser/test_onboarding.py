"""A new landlord, from an empty account to a tenant's final statement, in the
browser against the real single-process server (no admin, no shell):

property → a prepaid and a postpaid unit → a tariff (assigned to both) → a device
registered and connected by the simulator with the secret shown on the page →
a tenant invited, who accepts through the emailed link and sees the first
readings priced → the postpaid unit switched to prepaid → the tenancy ended with
its final statement.

The demo's second landlord ("newlandlord") starts with nothing set up. The server
prints email to its output (no mail server), where the invitation link is read.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
import zoneinfo
from datetime import datetime
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from landlord.demo import DEMO_PASSWORD, NEW_LANDLORD_USER
from meters.simulator import SimDevice, run_device
from tests.browser.conftest import _server_log

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

STEP_TIMEOUT_MS = 30_000  # a page under load
LIVE_TIMEOUT_MS = 120_000  # a device connecting, readings priced
TENANT_EMAIL = "tess.tenant@example.com"
TENANT_PASSWORD = "a-long-pass-phrase-9"


class Simulator:
    """One simulated device in its own thread and event loop, stopped on demand."""

    def __init__(self, url: str, device: SimDevice) -> None:
        self.device = device
        self._url = url
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await run_device(self._url, self.device, self._stop, jitter=False)

        asyncio.run(main())

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(30), "the simulator did not start"

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)


def _log_in(context: Any, base: str, username: str, password: str) -> Page:
    page = context.new_page()
    page.goto(base + "/accounts/login/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return page


def _unit_id(page: Page, base: str, name: str) -> int:
    """The id of a unit, from its Edit link on the set-up page."""
    page.goto(base + "/landlord/setup/")
    link = page.locator("tr", has_text=name).get_by_role("link", name="Edit")
    href = link.get_attribute("href") or ""
    found = re.search(r"/units/(\d+)/", href)
    assert found, f"no edit link for {name}: {href!r}"
    return int(found.group(1))


def _invitation_link(email: str, timeout_s: float = 60) -> str:
    """The link of the newest invitation printed to the server's output for ``email``."""
    path = _server_log["path"]
    deadline = time.monotonic() + timeout_s
    while True:
        text = path.read_text(errors="replace").replace("=\n", "")
        at = text.rfind(f"To: {email}")
        if at >= 0:
            links = re.findall(r"https?://\S+/invite/[^/\s]+/", text[at:])
            if links:
                return links[0]
        assert time.monotonic() < deadline, f"no invitation email to {email} in the server output"
        time.sleep(0.5)


def test_a_new_landlord_from_an_empty_account_to_a_final_statement(
    submeter_server: str, phone: Any
) -> None:
    base = submeter_server
    context = phone()
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = _log_in(context, base, NEW_LANDLORD_USER, DEMO_PASSWORD)

    # --- an empty account: the checklist says where to start
    page.goto(base + "/landlord/units/")
    expect(page.get_by_test_id("onboarding")).to_be_visible()

    # --- a property
    page.goto(base + "/landlord/setup/properties/new/")
    page.locator("#id_name").fill("Elm House")
    page.get_by_role("button", name="Add property").click()
    expect(page).to_have_url(re.compile(r"/landlord/setup/units/new/"))

    # --- two units: one prepaid (the form's default), one postpaid
    page.locator("#id_name").fill("Flat A")
    page.locator("input[name=billing_mode][value=prepaid]").check()
    page.get_by_role("button", name="Add unit").click()
    expect(page).to_have_url(re.compile(r"/landlord/setup/$"))
    page.goto(base + "/landlord/setup/units/new/")
    page.locator("#id_name").fill("Flat B")
    page.locator("input[name=billing_mode][value=postpaid]").check()
    page.get_by_role("button", name="Add unit").click()
    expect(page).to_have_url(re.compile(r"/landlord/setup/$"))

    # --- a flat tariff from today, in pence per kWh
    today = datetime.now(zoneinfo.ZoneInfo("Europe/London")).date()
    page.goto(base + "/landlord/setup/tariffs/new/")
    page.locator("#id_name").fill("Standard")
    page.locator("input[name=kind][value=flat]").check()
    page.locator("#id_valid_from").fill(today.isoformat())
    page.locator("#id_price").fill("30")
    page.get_by_role("button", name="Create tariff").click()
    expect(page).to_have_url(re.compile(r"/landlord/setup/tariffs/\d+/$"))

    # ... assigned to both units
    flat_a = _unit_id(page, base, "Flat A")
    flat_b = _unit_id(page, base, "Flat B")
    for unit_id in (flat_a, flat_b):
        page.goto(f"{base}/landlord/setup/units/{unit_id}/")
        option = page.locator("#id_tariff option", has_text="Standard")
        page.locator("#id_tariff").select_option(value=option.get_attribute("value"))
        page.get_by_role("button", name="Save").click()
        expect(page).to_have_url(re.compile(r"/landlord/setup/$"))

    # --- a device for Flat A: its secret is shown once
    page.goto(f"{base}/landlord/units/{flat_a}/devices/")
    page.locator("#id_ident").fill("elm-a-meter")
    page.get_by_role("button", name="Register device").click()
    expect(page.get_by_role("heading", name="elm-a-meter is registered")).to_be_visible()
    ident = page.locator("#device-ident").inner_text().strip()
    secret = page.locator("#device-secret").inner_text().strip()
    server_url = page.locator("#device-url").inner_text().strip()
    assert ident == "elm-a-meter" and secret
    assert server_url.endswith("/ws/device/v1")

    # ... connected with the simulator, using what the page showed
    sim = Simulator(
        server_url.removesuffix("/ws/device/v1"),
        SimDevice(ident=ident, secret=secret, power_w=3000, speed=20, interval_s=1.0),
    )
    page.get_by_role("link", name="Done: watch for the first connection").click()
    expect(page.get_by_test_id("device-status")).to_have_text(
        re.compile("waiting for first connection", re.I)
    )
    sim.start()
    try:
        expect(page.get_by_test_id("device-status")).to_have_text(
            re.compile(r"^\s*connected\s*$", re.I), timeout=LIVE_TIMEOUT_MS
        )

        # --- a tenant for Flat A, invited by email
        page.goto(f"{base}/landlord/units/{flat_a}/tenants/")
        page.locator("#id_email").fill(TENANT_EMAIL)
        page.get_by_role("button", name="Send invitation").click()
        expect(page.get_by_text(f"Invitation sent to {TENANT_EMAIL}")).to_be_visible()
        link = _invitation_link(TENANT_EMAIL)

        # ... who accepts on their phone and sees the readings priced
        tenant_context = phone()
        tenant_context.set_default_timeout(STEP_TIMEOUT_MS)
        tenant = tenant_context.new_page()
        tenant.goto(link)
        tenant.locator("#id_password1").fill(TENANT_PASSWORD)
        tenant.locator("#id_password2").fill(TENANT_PASSWORD)
        tenant.get_by_role("button", name="Create my account").click()
        expect(tenant.get_by_test_id("balance")).to_be_visible()
        # No credit yet: the priced usage makes the balance negative.
        expect(tenant.get_by_test_id("balance")).to_have_text(
            re.compile(r"[\u2212-]\s*£\s*0*[.]?\d*[1-9]"), timeout=LIVE_TIMEOUT_MS
        )
    finally:
        sim.stop()

    # --- Flat B switches from postpaid to prepaid, after confirming what it means
    page.goto(f"{base}/landlord/units/{flat_b}/billing-mode/")
    expect(page.get_by_role("heading", name="Flat B is postpaid")).to_be_visible()
    page.locator("form input[name=confirm]").first.check()
    page.get_by_role("button", name="Switch to prepaid now").click()
    expect(page.get_by_text("Flat B is now prepaid")).to_be_visible()

    # --- the tenancy of Flat A ends, with a closing reading above the meter's last
    closing_kwh = math.ceil(sim.device.register_wh / 1000) + 1
    page.goto(f"{base}/landlord/units/{flat_a}/tenants/")
    page.get_by_role("link", name="Move out").click()
    page.locator("#id_closing").fill(str(closing_kwh))
    page.get_by_role("button", name="End tenancy").click()
    expect(page).to_have_url(re.compile(r"/landlord/tenancies/\d+/statement/$"))
    owed = page.locator(
        "[data-testid=owed-by-tenant], [data-testid=owed-to-tenant], [data-testid=settled]"
    )
    expect(owed.first).to_be_visible()
    expect(page.get_by_test_id("owed-by-tenant")).to_have_text(re.compile(r"£\s*\d+\.\d\d"))
