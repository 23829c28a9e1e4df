"""Give a device a new secret and print it once (only its hash is stored)."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from landlord.audit import audit_record
from meters.models import Device


class Command(BaseCommand):
    help = "Set a new random secret for a device and print it once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("ident", help="the device's public identifier")

    def handle(self, *args: Any, **opts: Any) -> None:
        device = Device.objects.filter(ident=opts["ident"]).first()
        if device is None:
            raise CommandError(f"No device {opts['ident']!r}.")
        secret = secrets.token_urlsafe(24)
        device.set_secret(secret)
        device.save(update_fields=["secret_hash"])
        audit_record(
            landlord_id=device.landlord_id,
            action="device.secret_rotated",
            device=device,
            reason="manage.py device_secret",
        )
        self.stdout.write(f"ident:  {device.ident}\nsecret: {secret}")
        self.stderr.write("The secret is shown only now; configure the device with it.")
