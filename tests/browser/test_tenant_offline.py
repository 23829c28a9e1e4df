"""The installable tenant app on a phone (390 x 844, touch) against the real server:
the manifest is linked and valid, the service worker takes control, and a reload
with the network gone shows the last balance this phone saw, labelled with its
age and "offline", never as live. Back online, the page is the server's again."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from landlord.demo import DEMO_PASSWORD
from tests.browser.conftest import PHONE
from tests.browser.test_tenant_axe import _violations

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PHONE_390 = {**PHONE, "viewport": {"width": 390, "height": 844}}
AGE_LABEL = re.compile(r"^as of \d{2}:\d{2}, (just now|\d+ min ago|\d+ h ago) — offline$")


def test_offline_reload_shows_the_last_balance_with_its_age(
    submeter_server: str, browser: Any
) -> None:
    context = browser.new_context(**PHONE_390)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(submeter_server + "/")
        page.locator("#id_username").fill("tenant1")
        page.locator("#id_password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Sign in").tap()
        expect(page).to_have_url(re.compile(r"/tenant/\d+/$"))
        tenancy_id = re.search(r"/tenant/(\d+)/$", page.url).group(1)  # type: ignore[union-attr]
        home = page.url

        # The manifest: linked, valid JSON, with its icons served as PNGs.
        href = page.locator('link[rel="manifest"]').get_attribute("href")
        assert href
        resp = page.request.get(submeter_server + href)
        assert resp.ok and resp.headers["content-type"].startswith("application/manifest+json")
        manifest = json.loads(resp.text())
        assert manifest["start_url"] == "/" and manifest["display"] == "standalone"
        sizes = {icon["sizes"] for icon in manifest["icons"]}
        assert {"192x192", "512x512"} <= sizes
        for icon in manifest["icons"]:
            got = page.request.get(submeter_server + icon["src"])
            assert got.ok and got.body()[:8] == b"\x89PNG\r\n\x1a\n"

        # The service worker: registered for the whole site, and in control.
        script = page.evaluate(
            "navigator.serviceWorker.ready.then(r => [r.scope, r.active.scriptURL])"
        )
        assert script == [submeter_server + "/", submeter_server + "/sw.js"]
        page.wait_for_function("navigator.serviceWorker.controller !== null")
        # The page keeps what it shows for the offline page.
        key = f"submeter:last:{tenancy_id}"
        page.wait_for_function(f"localStorage.getItem({json.dumps(key)}) !== null")
        expect(page.get_by_test_id("balance")).to_contain_text("£")

        context.set_offline(True)
        page.reload()
        saved = json.loads(page.evaluate(f"localStorage.getItem({json.dumps(key)})"))
        balance = page.get_by_test_id("offline-balance")
        expect(balance).to_have_text(saved["value"])
        # An amount, negative too (U+2212) once the demo's Flat 1 has run out of credit.
        assert re.fullmatch(r"[\u2212-]?£\d[\d,]*\.\d\d", saved["value"]), saved["value"]
        expect(page.get_by_test_id("offline-age")).to_have_text(AGE_LABEL)
        expect(page.get_by_test_id("offline-state")).to_have_text("offline")
        expect(page.get_by_test_id("balance")).to_have_count(0)  # nothing shown as live

        # Back online. The offline page reloads itself when the browser says so
        # (its "online" listener), which may abort this navigation: either way the
        # page that loads is the live one.
        context.set_offline(False)
        try:
            page.goto(home)
        except PlaywrightError as exc:
            if not any(m in str(exc) for m in ("ERR_ABORTED", "interrupted by another navigation")):
                raise
        expect(page.get_by_test_id("balance")).to_contain_text("£")
        expect(page.get_by_test_id("offline-balance")).to_have_count(0)
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_offline_page_passes_axe(submeter_server: str, browser: Any, scheme: str) -> None:
    context = browser.new_context(**PHONE_390, color_scheme=scheme)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(submeter_server + "/offline/")
        page.wait_for_load_state("load")
        assert _violations(page) == []
    finally:
        context.close()
