"""An axe-core pass over every tenant page, at phone size, dark and light:
no serious or critical violations. axe.min.js is vendored (tests/browser/vendor)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from landlord.demo import DEMO_PASSWORD
from tests.browser.conftest import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
PAGES = ["", "history/", "usage/", "usage/?period=month", "settings/", "cant-pay/"]


def _violations(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(content=AXE)
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({id: v.id, impact: v.impact,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }"""
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_tenant_pages_pass_axe(submeter_server: str, browser: Any, scheme: str) -> None:
    context = browser.new_context(
        **{**PHONE, "viewport": {"width": 390, "height": 844}}, color_scheme=scheme
    )
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(submeter_server + "/")
        page.locator("#id_username").fill("tenant1")
        page.locator("#id_password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Sign in").tap()
        expect(page).to_have_url(re.compile(r"/tenant/\d+/$"))
        home = page.url
        found = {}
        for path in PAGES:
            page.goto(home + path)
            if path.startswith("usage/"):
                expect(page.locator("[data-usage-chart][data-ready]")).to_have_count(1)
            else:
                page.wait_for_load_state("load")
            bad = _violations(page)
            if bad:
                found[path or "home"] = bad
        assert found == {}, found
    finally:
        context.close()
