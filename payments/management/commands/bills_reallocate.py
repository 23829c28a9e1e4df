from django.core.management.base import BaseCommand
from django.db import transaction

from landlord.models import Tenancy
from payments.allocation import bills_allocate
from payments.models import Invoice


class Command(BaseCommand):
    help = (
        "Recompute which payments paid which bills, for every tenancy with a bill "
        "(idempotent). Run once after upgrading to a release whose allocation rules "
        "changed; ledger_verify reports allocations stored under older rules."
    )

    def handle(self, *args: object, **options: object) -> None:
        tenancy_ids = Invoice.objects.values_list("tenancy_id", flat=True).distinct().order_by()
        done = 0
        for tenancy in Tenancy.objects.filter(pk__in=tenancy_ids).order_by("pk").iterator():
            with transaction.atomic():  # one tenancy at a time: its row lock is short
                bills_allocate(tenancy=tenancy)
            done += 1
        self.stdout.write(f"allocations recomputed; tenancies with bills: {done}")
