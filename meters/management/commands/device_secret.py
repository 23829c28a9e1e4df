"""Give a device a new secret and print it once (only its hash is stored)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from meters.devices import device_secret_rotate
from meters.models import Device


class Command(BaseCommand):
    help = "Set a new random secret for a device and print it once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("ident", help="the device's public identifier")

    def handle(self, *args: Any, **opts: Any) -> None:
        device = Device.objects.filter(ident=opts["ident"]).first()
        if device is None:
            raise CommandError(f"No device {opts['ident']!r}.")
        # The same service as the landlord's page: the old secret stops working at
        # once (an open socket with it is closed) and the change is audit-logged.
        secret = device_secret_rotate(device=device, actor_id=None)
        self.stdout.write(f"ident:  {device.ident}\nsecret: {secret}")
        self.stderr.write("The secret is shown only now; configure the device with it.")
