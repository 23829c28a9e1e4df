"""Browser live updates: a full snapshot on connect, then a fresh partial per change.

Group messages only name what changed; the HTML is rendered from the
database here, so a lost message delays a screen but never makes it wrong.

The landlord's home also shows what needs attention and the numbers
(``landlord.dashboard``), landlord-wide. A unit's change sends its row at once
and the summary at most every ``LIVE_SUMMARY_SECONDS``: many changes in a
burst (a building's meters reporting) cost one summary, sent after the last.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import Http404
from django.template.loader import render_to_string

from config.live import landlord_group, tenancy_group

from . import access, dashboard, selectors

CLOSE_NOT_FOUND = 4404
# Sent every LIVE_HEARTBEAT_SECONDS: the page counts it as a sign of life and swaps
# nothing (an HTML comment has no element to swap).
HEARTBEAT = "<!-- heartbeat -->"


class LiveConsumer(AsyncWebsocketConsumer):
    group: str = ""
    _heartbeat: asyncio.Task[None] | None = None
    _summary: asyncio.Task[None] | None = None
    _summary_sent_at: float = 0.0

    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        user = self.scope.get("user")
        self.kind = kwargs["scope_kind"]
        try:
            if self.kind == "tenancy":
                tenancy = await database_sync_to_async(access.access_current_tenancy)(
                    user=user, tenancy_id=int(kwargs["tenancy_id"])
                )
                self.tenancy_id = tenancy.pk
                self.group = tenancy_group(tenancy.pk)
            else:
                landlord = await database_sync_to_async(access.landlord_for_user)(user=user)
                self.landlord_id = landlord.pk
                self.group = landlord_group(landlord.pk)
        except Http404:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(text_data=await database_sync_to_async(self._snapshot)())
        self._summary_sent_at = asyncio.get_running_loop().time()
        self._heartbeat = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        """A page that hears nothing for a while knows its numbers may be stale,
        even when the socket looks open (a phone that slept, a proxy that dropped it)."""
        interval = float(settings.SUBMETER["LIVE_HEARTBEAT_SECONDS"])
        while True:
            await asyncio.sleep(interval)
            await self.send(text_data=HEARTBEAT)

    async def disconnect(self, code: int) -> None:
        for task in (self._heartbeat, self._summary):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._heartbeat = self._summary = None
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Browsers only listen; htmx may send form values on ws-send, which we ignore.
        return

    async def unit_changed(self, event: dict[str, Any]) -> None:
        unit_id = event.get("unit_id")
        html = await database_sync_to_async(self._render_unit)(
            int(unit_id) if unit_id is not None else None
        )
        if html is None:
            # The tenancy ended while its page was open: the unit is someone else's now.
            await self.close(code=CLOSE_NOT_FOUND)
        elif html:
            await self.send(text_data=html)
            if self.kind == "landlord" and unit_id is not None:
                self._summary_soon()

    def _summary_soon(self) -> None:
        """Send the home's summary once the last one is ``LIVE_SUMMARY_SECONDS`` old
        (one pending at a time: the changes meanwhile are all in it)."""
        if self._summary is not None and not self._summary.done():
            return
        self._summary = asyncio.create_task(self._send_summary())

    async def _send_summary(self) -> None:
        loop = asyncio.get_running_loop()
        every = float(settings.SUBMETER.get("LIVE_SUMMARY_SECONDS", 5))
        wait = self._summary_sent_at + every - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        html = await database_sync_to_async(self._render_summary)()
        self._summary_sent_at = loop.time()
        await self.send(text_data=html)

    def _render_summary(self, rows: list[selectors.UnitView] | None = None) -> str:
        if rows is None:
            rows = selectors.landlord_unit_views(landlord_id=self.landlord_id)
        home = dashboard.landlord_home(landlord_id=self.landlord_id, rows=rows)
        return render_to_string("landlord/units.html#summary", {"home": home})

    def _snapshot(self) -> str:
        if self.kind == "tenancy":
            return self._render_tenancy() or ""
        rows = selectors.landlord_unit_views(landlord_id=self.landlord_id)
        return render_to_string("landlord/units.html#rows", {"rows": rows}) + self._render_summary(
            rows
        )

    def _render_tenancy(self) -> str | None:
        tenancy = access.Tenancy.objects.select_related("unit__property").get(pk=self.tenancy_id)
        if not tenancy.is_current():
            return None
        return render_to_string(
            "tenant/home.html#panel", selectors.tenant_panel_context(tenancy=tenancy)
        )

    def _render_unit(self, unit_id: int | None) -> str | None:
        if self.kind == "tenancy":
            return self._render_tenancy()
        if unit_id is None:
            # Something landlord-wide changed (e.g. the payment account): every row.
            return self._snapshot()
        row = selectors.landlord_unit_view(landlord_id=self.landlord_id, unit_id=unit_id)
        if row is None:
            return ""
        return render_to_string("landlord/units.html#row", {"row": row})
