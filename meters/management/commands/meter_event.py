"""Record a meter reset or replacement: the old register's last and the new one's first value."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from meters.meter_events import meter_event_record
from meters.models import Meter, MeterEvent
from meters.readings import ReadingRejected


class Command(BaseCommand):
    help = (
        "Record a meter reset or replacement. Energy up to the old register's last value "
        "is billed; billing continues from the new register's first value."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("serial", help="serial of the installed meter")
        parser.add_argument("kind", choices=MeterEvent.Kind.values)
        parser.add_argument("--at", required=True, help="ISO 8601 time with a UTC offset")
        parser.add_argument("--old-last-wh", type=int, required=True)
        parser.add_argument("--new-first-wh", type=int, required=True)
        parser.add_argument("--new-serial", default="", help="replacement: the new meter's serial")
        parser.add_argument("--reason", default="")

    def handle(self, *args: Any, **opts: Any) -> None:
        meter = Meter.objects.installed().filter(serial=opts["serial"]).first()
        if meter is None:
            raise CommandError(f"No installed meter {opts['serial']!r}.")
        try:
            at = datetime.fromisoformat(opts["at"])
        except ValueError as exc:
            raise CommandError(f"--at: {exc}") from exc
        if at.tzinfo is None:
            raise CommandError("--at needs a UTC offset, e.g. 2026-11-27T10:00:00+00:00")
        if opts["old_last_wh"] < 0 or opts["new_first_wh"] < 0:
            raise CommandError("Register values cannot be negative.")
        try:
            event = meter_event_record(
                meter=meter,
                kind=opts["kind"],
                at=at,
                old_last_wh=opts["old_last_wh"],
                new_first_wh=opts["new_first_wh"],
                new_serial=opts["new_serial"],
                reason=opts["reason"] or "manage.py meter_event",
            )
        except ReadingRejected as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"recorded: {event}")
