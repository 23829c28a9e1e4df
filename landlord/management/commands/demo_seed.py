from django.core.management.base import BaseCommand

from landlord.demo import DEMO_PASSWORD, demo_seed


class Command(BaseCommand):
    help = "Create the demo landlord, units, tenants and devices (once)."

    def handle(self, *args: object, **options: object) -> None:
        logins = demo_seed()
        for login in logins:
            self.stdout.write(f"  {login.username:<11} / {DEMO_PASSWORD}   ({login.role})")
