"""The tenant's home on a phone (390 x 844, touch) against the real server: the
balance falls without a reload, and a socket that goes silent or drops reads
"reconnecting…", never "live", until a new socket is heard from.

The page's sockets go through Playwright's WebSocket routing, so the test can
silence one (as a phone that slept, or a proxy that lost it, would) or close it.

"reconnecting…" lasts only until the new socket's snapshot arrives, often a
tenth of a second, shorter than the gaps between a locator's polls. So the page
records each state it shows (a MutationObserver the test installs), and the
test reads that record: the state is caught however briefly it was on screen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from landlord.demo import DEMO_PASSWORD
from tests.browser.conftest import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PHONE_390 = {**PHONE, "viewport": {"width": 390, "height": 844}}
LIVE_TIMEOUT_MS = 120_000
# The test server's heartbeat is 3 s: silence is noticed after about 8 s.
SILENCE_TIMEOUT_MS = 30_000


@dataclass
class Route:
    page_side: WebSocketRoute
    silent: bool = False


@dataclass
class Sockets:
    routes: list[Route] = field(default_factory=list)

    def handle(self, ws: WebSocketRoute) -> None:
        route = Route(ws)
        server = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            if not route.silent:
                ws.send(message)

        server.on_message(from_server)
        ws.on_message(lambda message: server.send(message))
        self.routes.append(route)


# Records [connection text, freshness text] each time the live area changes;
# ``window.__connStates`` is the record since the last call.
RECORD_STATES = """() => {
    const area = document.querySelector('[data-live]');
    const text = (sel) => ((document.querySelector(sel) || {}).textContent || '').trim();
    window.__connStates = [];
    if (window.__connObserver) { window.__connObserver.disconnect(); }
    window.__connObserver = new MutationObserver(() => {
        window.__connStates.push([text('[data-conn]'), text('[data-fresh-label]')]);
    });
    window.__connObserver.observe(area, {subtree: true, childList: true, characterData: true});
}"""
# True once the record holds "reconnecting…" (with the numbers not called live)
# and, after it, "live" again.
RECONNECTED = """() => {
    const states = window.__connStates || [];
    const down = states.findIndex(([conn, fresh]) => conn === 'reconnecting…' && fresh !== 'live');
    return down >= 0 && states.slice(down + 1).some(([conn]) => conn === 'live');
}"""


def _log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(base_url + "/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").tap()
    expect(page).to_have_url(re.compile(r"/tenant/\d+/$"))


def test_tenant_home_live_on_a_phone(fresh_submeter_server: str, browser: Any) -> None:
    # A server of its own, and Flat 4 (the most credit of the demo's flats): its
    # balance keeps falling for about ten minutes after the server starts,
    # whatever other tests did before.
    context = browser.new_context(**PHONE_390)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        sockets = Sockets()
        page.route_web_socket(re.compile(r"/ws/live/"), sockets.handle)
        _log_in(page, fresh_submeter_server, "tenant4")
        conn = page.locator("[data-conn]")
        expect(conn).to_have_text("live", timeout=15_000)
        page.evaluate("() => { window.__marker = 1; }")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"the tenant home scrolls sideways at 390 px: {width} px"
        small = page.evaluate(
            """() => [...document.querySelectorAll(
                'main button, main .button, main input:not([type=checkbox]), main li a, main summary'
            )].filter(e => e.offsetParent !== null)
              .map(e => [(e.textContent || e.name || '').trim(), e.getBoundingClientRect().height])
              .filter(([, h]) => h < 44)"""
        )
        assert small == [], f"tap targets under 44 px: {small}"

        # The balance falls without a reload.
        first = page.get_by_test_id("balance").inner_text().strip()
        page.wait_for_function(
            """([initial]) => {
                const el = document.querySelector('[data-testid="balance"]');
                return el !== null && el.textContent.trim() !== initial;
            }""",
            arg=[first],
            timeout=LIVE_TIMEOUT_MS,
        )
        assert page.get_by_test_id("supply-line").count() == 1
        assert page.get_by_test_id("alert").count() <= 1

        # The socket goes silent: "reconnecting…", then a new socket, then live again.
        opened = len(sockets.routes)
        page.evaluate(RECORD_STATES)
        for route in sockets.routes:
            route.silent = True
        page.wait_for_function(RECONNECTED, timeout=SILENCE_TIMEOUT_MS)
        expect(conn).to_have_text("live")
        assert len(sockets.routes) > opened, "no new socket was opened"

        # The socket is closed under the page: the same again.
        opened = len(sockets.routes)
        page.evaluate(RECORD_STATES)
        sockets.routes[-1].page_side.close(code=1012, reason="restart")
        page.wait_for_function(RECONNECTED, timeout=SILENCE_TIMEOUT_MS)
        expect(conn).to_have_text("live")
        assert len(sockets.routes) > opened, "no new socket was opened"

        # Still the same page, and its numbers still move.
        assert page.evaluate("() => window.__marker") == 1, "the page was reloaded"
        now = page.get_by_test_id("balance").inner_text().strip()
        page.wait_for_function(
            """([before]) => {
                const el = document.querySelector('[data-testid="balance"]');
                return el !== null && el.textContent.trim() !== before;
            }""",
            arg=[now],
            timeout=LIVE_TIMEOUT_MS,
        )
    finally:
        context.close()
