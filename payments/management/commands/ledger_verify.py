from django.core.management.base import BaseCommand, CommandError

from payments.ledger import ledger_verify


class Command(BaseCommand):
    help = "Verify every ledger invariant; exits non-zero on any discrepancy."

    def handle(self, *args: object, **options: object) -> None:
        problems = ledger_verify()
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"{len(problems)} ledger discrepancies found")
        self.stdout.write("ledger ok")
