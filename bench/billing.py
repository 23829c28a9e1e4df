"""Benchmark: postpaid bills issued per second by the billing run, beside writing the same bills raw.

    .venv/bin/python bench/billing.py                      # 100,000 tenancies (PostgreSQL if DATABASE_URL is set)
    .venv/bin/python bench/billing.py --quick              # 1,000 tenancies, within a minute (what CI runs)
    .venv/bin/python bench/billing.py --tenancies 20000 --deadline 120
    .venv/bin/python bench/billing.py --quick --standing   # standing charges posted per day

It builds a fresh database (on PostgreSQL one named after DATABASE_URL's with
``_billing`` appended, dropped afterwards; otherwise a temporary SQLite file)
holding one landlord with ``--tenancies`` postpaid units, each with a meter,
a tenancy from the first of last month and eight priced half-hour slots in
that month on a tiered tariff with a standing charge and tax (the sweep's
state says standing charges were posted through the month; with ``--standing``
they are in the ledger too, one transaction a day, for the bills to read). Then it
runs the hourly billing task, ``payments.billing.invoices_issue_due``, at
01:00 on the first of this month, showing a progress bar, and prints bills
per second. The baseline, in the same run, writes the same number of bills
and lines with ``bulk_create`` and nothing else: what storing the bills costs
at the least.

The measured stage stops at its deadline (``--deadline``) and reports how far
it got; a run that does not answer within its limit is killed and reported as
stalled (exit status 2). ``BENCH_PROFILE=cumulative`` (or another pstats
sort key) prints a profile of the billing run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the project root comes first
    sys.path.insert(0, str(ROOT))
from bench.fresh import postgres_database, run_child  # noqa: E402

SLOTS = 8
SETUP_SECONDS_PER_10K = 40.0
TARGET_SECONDS = 60.0
TARGET_TENANCIES = 100_000


def bar(done: int, total: int, started: float) -> str:
    width = 30
    filled = width * done // max(total, 1)
    rate = done / max(time.perf_counter() - started, 1e-9)
    return f"\r  [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} bills, {rate:,.0f}/s"


def estate(tenancies: int, month_start, tz_name: str, *, standing: bool = False) -> None:
    """One landlord, ``tenancies`` postpaid units with a meter, a tenancy and priced slots
    (``standing``: and each day's standing charge posted to the ledger, as the sweep does)."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from django.contrib.auth import get_user_model

    from landlord.models import Landlord, Property, Tenancy, Unit
    from meters.models import Device, Interval, Meter
    from payments import rating, tariffs
    from payments.models import BillingState, Tariff
    from payments.tariffs import unit_schedule

    landlord = Landlord.objects.create(name="Billing bench")
    prop = Property.objects.create(landlord=landlord, name="Bench estate", timezone=tz_name)
    tariff = Tariff.objects.create(landlord=landlord, name="Tiers", currency="GBP")
    tariffs.tariff_version_create(
        tariff=tariff,
        valid_from=month_start - timedelta(days=400),
        rates=[("", 0, Decimal("24.5")), ("", 200_000, Decimal("29.75"))],
        standing_charge_per_day_minor=Decimal("45.5"),
        tax_percent=Decimal("5"),
        tax_inclusive=False,
    )
    User = get_user_model()
    batch = 5000
    last_day = (month_start.replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    for first in range(0, tenancies, batch):
        n = min(batch, tenancies - first)
        users = User.objects.bulk_create(
            User(username=f"bench-{first + i}", password="!") for i in range(n)
        )
        units = Unit.objects.bulk_create(
            Unit(
                landlord=landlord,
                property=prop,
                name=f"U{first + i}",
                tariff=tariff,
                billing_mode=Unit.BillingMode.POSTPAID,
            )
            for i in range(n)
        )
        ten = Tenancy.objects.bulk_create(
            Tenancy(landlord=landlord, unit=u, tenant=t, start_date=month_start)
            for u, t in zip(units, users, strict=True)
        )
        BillingState.objects.bulk_create(
            BillingState(landlord=landlord, tenancy=t, standing_through=last_day) for t in ten
        )
        if standing:
            standing_charges(landlord, ten, month_start, last_day)
        devices = Device.objects.bulk_create(
            Device(landlord=landlord, unit=u, ident=f"bench-{first + i}", secret_hash="!")
            for i, u in enumerate(units)
        )
        meters = Meter.objects.bulk_create(
            Meter(landlord=landlord, unit=u, device=d, serial=f"B{first + i}")
            for i, (u, d) in enumerate(zip(units, devices, strict=True))
        )
        schedule = unit_schedule(unit=units[0])
        version = schedule.versions[0]
        slots = []
        for m in meters:
            for k in range(SLOTS):
                start = datetime.combine(
                    month_start + timedelta(days=2 * k + 1), datetime.min.time(), UTC
                ) + timedelta(hours=12)
                wh = 250 + 10 * k
                net = wh * 245 * rating.SCALE // 10_000  # 24.5p a kWh, in sub-units
                gross, _tax = version.gross(net)
                line = rating.Line(version.id, "", 0, Decimal("24.5"), wh, net)
                slots.append(
                    Interval(
                        landlord=landlord,
                        meter=m,
                        kind=Interval.Kind.SLOT,
                        start=start,
                        end=start + timedelta(minutes=30),
                        energy_wh=wh,
                        gross_sub=gross,
                        net_sub=net,
                        tariff_version_id=version.id,
                        lines=[line.as_json()],
                    )
                )
        Interval.objects.bulk_create(slots, batch_size=5000)


def standing_charges(landlord, tenancies, month_start, last_day) -> None:
    """Each tenancy's standing charge of 45.5p a day, posted per day (45p, then 46p)."""
    from datetime import timedelta

    from django.db.models import F

    from payments.models import Account, LedgerTransaction, Posting

    revenue, _ = Account.objects.get_or_create(
        landlord=landlord, kind=Account.Kind.REVENUE, currency="GBP"
    )
    accounts = Account.objects.bulk_create(
        Account(landlord=landlord, kind=Account.Kind.TENANT, currency="GBP", tenancy=t)
        for t in tenancies
    )
    days = [month_start + timedelta(days=n) for n in range((last_day - month_start).days + 1)]
    amounts = [45 + n % 2 for n in range(len(days))]
    txns = LedgerTransaction.objects.bulk_create(
        (
            LedgerTransaction(
                landlord=landlord,
                kind=LedgerTransaction.Kind.STANDING,
                idempotency_key=f"standing:{t.pk}:{day.isoformat()}",
            )
            for t in tenancies
            for day in days
        ),
        batch_size=5000,
    )
    Posting.objects.bulk_create(
        (
            Posting(
                landlord=landlord,
                transaction=txn,
                debit=accounts[i // len(days)],
                credit=revenue,
                amount_minor=amounts[i % len(days)],
            )
            for i, txn in enumerate(txns)
        ),
        batch_size=5000,
    )
    Account.objects.filter(pk__in=[a.pk for a in accounts]).update(balance_minor=-sum(amounts))
    Account.objects.filter(pk=revenue.pk).update(
        balance_minor=F("balance_minor") + sum(amounts) * len(accounts)
    )


def raw_bills(tenancy_ids: list[int], month_start, deadline: float) -> tuple[int, float]:
    """The baseline: the same bills and four lines each, stored with bulk_create only."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from payments.models import Invoice, InvoiceLine

    end = (month_start + timedelta(days=32)).replace(day=1)
    started = time.perf_counter()
    done = 0
    for first in range(0, len(tenancy_ids), 1000):
        with transaction.atomic():
            invoices = Invoice.objects.bulk_create(
                Invoice(
                    landlord_id=_landlord_id(),
                    tenancy_id=t,
                    period_start=end,  # a period no real bill of the run uses
                    period_end=(end + timedelta(days=32)).replace(day=1),
                    currency="GBP",
                    issued_at=timezone.now(),
                    energy_wh=2280,
                    net_minor=1900,
                    tax_minor=95,
                    total_minor=1995,
                    due_date=end + timedelta(days=14),
                    billed_through={},
                )
                for t in tenancy_ids[first : first + 1000]
            )
            InvoiceLine.objects.bulk_create(
                InvoiceLine(
                    invoice=inv, position=k, kind="energy", description="Energy", amount_minor=1
                )
                for inv in invoices
                for k in range(4)
            )
        done += len(invoices)
        if time.perf_counter() - started > deadline:
            break
    return done, time.perf_counter() - started


_LANDLORD: list[int] = []


def _landlord_id() -> int:
    if not _LANDLORD:
        from landlord.models import Landlord

        _LANDLORD.append(Landlord.objects.get(name="Billing bench").pk)
    return _LANDLORD[0]


def child(tenancies: int, deadline: float, *, standing: bool = False) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False
    from datetime import UTC, date, datetime, timedelta

    from django.core.management import call_command
    from django.db import connection

    from landlord.models import Tenancy
    from payments import billing
    from payments.models import Invoice

    today = date.today()
    this_month = today.replace(day=1)
    month_start = (this_month - timedelta(days=1)).replace(day=1)
    set_up = time.perf_counter()
    call_command("migrate", verbosity=0)
    estate(tenancies, month_start, "UTC", standing=standing)
    if connection.vendor == "postgresql":
        # A fleet's database has its planner statistics (autovacuum keeps them);
        # a database loaded a moment ago has none, and the plans it would get
        # measure that rather than the run.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(
        f"{connection.vendor}: {tenancies:,} postpaid tenancies with {SLOTS} priced slots each"
        f" in {month_start:%B %Y} (set up in {time.perf_counter() - set_up:.1f} s)",
        flush=True,
    )
    now = datetime.combine(this_month, datetime.min.time(), UTC).replace(hour=1)
    started = time.perf_counter()
    cpu_started = time.process_time()
    stop_at = started + deadline

    def progress(done: int) -> bool:
        print(bar(done, tenancies, started), end="", flush=True)
        return time.perf_counter() < stop_at

    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    issued = billing.invoices_issue_due(now=now, on_progress=progress)
    took = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if profiler is not None:
        import pstats

        profiler.disable()
        print()
        pstats.Stats(profiler).sort_stats(os.environ["BENCH_PROFILE"]).print_stats(30)
    print(bar(len(issued), tenancies, started), flush=True)
    print(f"  ({billing.BILLING_BATCH:,} tenancies a batch, one transaction each)")
    bills_per_s = len(issued) / took
    reached = "" if len(issued) >= tenancies else f" (stopped at the {deadline:.0f} s deadline)"
    print(
        f"  billing run: {len(issued):,} bills in {took:.1f} s = {bills_per_s:,.0f} bills/s{reached}"
    )
    print(
        f"  of which this process's CPU time: {cpu:.1f} s = {1e6 * cpu / max(len(issued), 1):,.0f} µs"
        " a bill (the rest is the database and waiting for a core)"
    )
    sample = Invoice.objects.order_by("pk").first()
    if sample is not None:
        print(f"  a bill: {sample.lines.count()} lines, total {sample.total_minor}p")
    ids = list(Tenancy.objects.order_by("pk").values_list("pk", flat=True))
    raw_done, raw_took = raw_bills(ids, month_start, deadline)
    raw_rate = raw_done / raw_took
    print(
        f"  baseline, the same bills stored with bulk_create only: {raw_rate:,.0f} bills/s;"
        f" the billing run is {bills_per_s / raw_rate:.1%} of it"
    )
    whole = TARGET_TENANCIES / bills_per_s
    if connection.vendor != "postgresql":
        verdict = "the target is set on PostgreSQL"
    elif whole <= TARGET_SECONDS:
        verdict = "target met"
    else:
        verdict = "target missed"
    print(
        f"  at this rate {TARGET_TENANCIES:,} tenancies take {whole:,.0f} s"
        f" (target: <= {TARGET_SECONDS:.0f} s on PostgreSQL): {verdict}",
        flush=True,
    )
    load = os.getloadavg()
    print(
        f"  machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        " (other work on the machine slows both figures alike)",
        flush=True,
    )


def run(env: dict[str, str], args: argparse.Namespace, limit: float) -> int:
    return run_child(
        [
            __file__,
            "--child",
            "--tenancies",
            str(args.tenancies),
            "--deadline",
            str(args.deadline),
            *(["--standing"] if args.standing else []),
        ],
        env,
        limit,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tenancies", type=int, default=None, help="default 100000 (quick: 1000)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds the run may take (default 300; quick: 10)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, within one minute")
    parser.add_argument(
        "--standing",
        action="store_true",
        help="with each day's standing charge already posted to the ledger (a bill reads them)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tenancies is None:
        args.tenancies = 1000 if args.quick else TARGET_TENANCIES
    if args.deadline is None:
        args.deadline = 10.0 if args.quick else 300.0
    if args.child:
        child(args.tenancies, args.deadline, standing=args.standing)
        return 0
    limit = SETUP_SECONDS_PER_10K * max(1, args.tenancies / 10_000) + 2 * args.deadline + 30
    url = os.environ.get("DATABASE_URL", "")
    print(
        f"bench/billing.py{' --quick' if args.quick else ''}: {args.tenancies:,} tenancies,"
        f" {args.deadline:.0f} s at most for the run",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "REDIS_URL": "",
            "SQLITE_PATH": str(Path(tmp) / "bench.sqlite3"),
            "HUEY_SQLITE_PATH": str(Path(tmp) / "huey.sqlite3"),
        }
        if not url.startswith("postgres"):
            print("postgresql skipped: set DATABASE_URL=postgres://... (the target is set there)")
            return run({**env, "DATABASE_URL": ""}, args, limit)
        with postgres_database(url, "_billing") as bench_url:
            return run({**env, "DATABASE_URL": bench_url}, args, limit)


if __name__ == "__main__":
    sys.exit(main())
