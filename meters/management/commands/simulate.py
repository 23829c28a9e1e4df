"""Run simulated devices against a running server.

  manage.py simulate --url ws://127.0.0.1:8000 --demo          # the demo devices
  manage.py simulate --url ws://127.0.0.1:8000 --device demo-1 --readings 3
  manage.py simulate --landlord "Load test" --interval 0.5 --power 5000   # heavier load

Each device is simulated in its own protocol (native v1 or Shelly Gen2+).

Device secrets are stored hashed, so the command gives the chosen devices
new secrets and uses those (a real device with the old secret is locked out).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from meters.devices import simulated_device_prepare
from meters.models import Device
from meters.simulator import run_any


class Command(BaseCommand):
    help = "Run simulated meters over the real device WebSocket."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="ws://127.0.0.1:8000")
        parser.add_argument("--device", action="append", default=[], help="device ident")
        parser.add_argument("--demo", action="store_true", help="all demo devices")
        parser.add_argument("--landlord", default="", help="all devices of this landlord (name)")
        parser.add_argument("--power", type=float, default=2000.0, help="watts")
        parser.add_argument("--speed", type=float, default=60.0)
        parser.add_argument("--interval", type=float, default=2.0, help="seconds")
        parser.add_argument("--readings", type=int, default=None, help="stop after N")

    def handle(self, *args: Any, **opts: Any) -> None:
        qs = Device.objects.all()
        if opts["demo"]:
            qs = qs.filter(ident__startswith="demo-")
        elif opts["landlord"]:
            qs = qs.filter(landlord__name=opts["landlord"])
        elif opts["device"]:
            qs = qs.filter(ident__in=opts["device"])
        else:
            raise CommandError("Name devices with --device IDENT, --landlord NAME or --demo.")
        sims = [
            simulated_device_prepare(
                device=device,
                power_w=opts["power"],
                speed=opts["speed"],
                interval_s=opts["interval"],
            )
            for device in qs.order_by("pk")
        ]
        if not sims:
            raise CommandError("No such devices.")
        self.stdout.write(f"simulating {len(sims)} device(s) against {opts['url']}")

        async def main() -> None:
            stops = [asyncio.Event() for _ in sims]
            await asyncio.gather(
                *(
                    run_any(opts["url"], sim, stop, max_readings=opts["readings"])
                    for sim, stop in zip(sims, stops, strict=True)
                )
            )

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
        for sim in sims:
            self.stdout.write(
                f"{sim.ident}: {sim.readings_sent} readings sent, relay {sim.relay} ({sim.protocol})"
            )
