"""Webhook benchmark: acknowledgement latency and events processed per second.

Run from the repository root:

    .venv/bin/python bench/webhooks.py            # 2000 payments, 10% duplicate deliveries
    .venv/bin/python bench/webhooks.py --payments 500
    .venv/bin/python bench/webhooks.py --quick    # 100 payments, well within a minute (CI)

It builds a scratch single-process deployment (SQLite in a temporary
directory, the SQLite task queue, Stripe switched on with test keys; nothing
leaves the machine) and then:

1. **Acknowledgement**: POSTs signed Connect webhooks (``checkout.session.completed``
   for every payment plus duplicates) through Django's full request stack
   and times each answer. This is what Stripe waits for: signature check on
   the raw body, one insert, one queued task.
2. **Processing**: drains the task queue in this process, one task at a
   time, as a single worker would (payment -> succeeded, ledger credit,
   supply re-evaluation, broadcasts), and reports events per second.

Every payment is then checked: credited exactly once, ``ledger_verify`` clean.
Each of the two stages stops at its deadline (``--deadline``; with ``--quick``
also within the run's minute) and reports how far it got; the checks then
cover what was processed.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The baseline each figure is compared with (our targets, not measurements).
ACK_P95_TARGET_MS = 100.0
PROCESS_TARGET_PER_S = 50.0
QUICK_SECONDS = 50.0
SECRET = "whsec_bench_connect"
ACCOUNT = "acct_bench_landlord"


def _configure(tmp: str) -> None:
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
    os.environ["SUBMETER_VAR_DIR"] = tmp
    os.environ["SQLITE_PATH"] = str(Path(tmp) / "bench.sqlite3")
    os.environ["HUEY_SQLITE_PATH"] = str(Path(tmp) / "huey.sqlite3")
    os.environ["STRIPE_SECRET_KEY"] = "sk_test_bench"
    os.environ["STRIPE_CONNECT_WEBHOOK_SECRET"] = SECRET
    os.environ["STRIPE_WEBHOOK_SECRET"] = "whsec_bench_platform"
    os.environ["LOG_LEVEL"] = "ERROR"
    os.environ["DEBUG"] = "0"


def _sign(body: bytes) -> str:
    t = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def stage_deadline(seconds: float, end: float | None, *, share: float) -> float:
    """``seconds`` from now, or less: ``share`` of the time left before ``end``."""
    now = time.monotonic()
    if end is None:
        return now + seconds
    return now + min(seconds, max((end - now) * share, 2.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=None, help="default 2000 (quick: 100)")
    parser.add_argument("--duplicates", type=float, default=0.10)
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds each stage may take (default 300; quick: 20)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, within a minute")
    args = parser.parse_args()
    if args.payments is None:
        args.payments = 100 if args.quick else 2000
    if args.deadline is None:
        args.deadline = 20.0 if args.quick else 300.0
    # A quick run's two stages share what is left of its minute after the set-up.
    end = time.monotonic() + QUICK_SECONDS if args.quick else None

    with tempfile.TemporaryDirectory(prefix="submeter-bench-") as tmp:
        _configure(tmp)
        import django

        django.setup()
        from django.core.management import call_command
        from django.test import Client
        from huey.contrib.djhuey import HUEY

        from payments.ledger import ledger_verify
        from payments.models import ConnectAccount, Payment, PaymentEvent
        from payments.services import payment_create
        from tests.factories import make_landlord_world

        call_command("migrate", verbosity=0)
        world = make_landlord_world("bench")
        ConnectAccount.objects.create(
            landlord=world.landlord, stripe_account_id=ACCOUNT, charges_enabled=True
        )
        payments = []
        for _ in range(args.payments):
            p = payment_create(
                tenancy=world.prepaid_tenancy,
                amount_minor=500,
                provider="stripe",
                created_by_id=None,
            )
            Payment.objects.filter(pk=p.pk).update(stripe_account=ACCOUNT)
            payments.append(p)

        bodies = []
        for p in payments:
            event = {
                "id": f"evt_{uuid.uuid4().hex[:24]}",
                "object": "event",
                "type": "checkout.session.completed",
                "account": ACCOUNT,
                "data": {
                    "object": {
                        "id": f"cs_test_{p.uuid.hex[:20]}",
                        "object": "checkout.session",
                        "amount_total": 500,
                        "currency": "gbp",
                        "metadata": {"payment_uuid": str(p.uuid)},
                        "payment_intent": f"pi_{p.uuid.hex[:20]}",
                        "payment_status": "paid",
                    }
                },
            }
            bodies.append(json.dumps(event).encode())
        step = max(1, round(1 / args.duplicates)) if args.duplicates > 0 else 0
        deliveries = list(bodies) + (bodies[::step] if step else [])

        client = Client()
        url = "/payments/stripe/connect-webhook/"
        latencies: list[float] = []
        started = time.perf_counter()
        deadline = stage_deadline(args.deadline, end, share=0.5)
        ack_limit = deadline - time.monotonic()
        for body in deliveries:
            if latencies and time.monotonic() >= deadline:
                break
            t0 = time.perf_counter()
            resp = client.post(
                url, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=_sign(body)
            )
            latencies.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise SystemExit(f"unexpected {resp.status_code}: {resp.content[:200]!r}")
        ack_elapsed = time.perf_counter() - started

        delivered = len(latencies)
        queued = HUEY.pending_count()
        started = time.perf_counter()
        processed = 0
        deadline = stage_deadline(args.deadline, end, share=1.0)
        proc_limit = deadline - time.monotonic()
        while time.monotonic() < deadline and (task := HUEY.dequeue()) is not None:
            HUEY.execute(task)
            processed += 1
        proc_elapsed = max(time.perf_counter() - started, 1e-9)

        credited = Payment.objects.filter(status="succeeded", ledger_transaction__isnull=False)
        problems = ledger_verify()
        balance = world.prepaid_tenancy.account.balance_minor
        # Every distinct payment delivered and processed, credited once; when a
        # stage stopped at its deadline, as many as got that far.
        complete = delivered == len(deliveries) and processed == queued
        expected = credited.count() if not complete else args.payments
        ok = (
            not problems
            and balance == 500 * credited.count()
            and expected == credited.count()
            and credited.count() <= PaymentEvent.objects.count() <= len(bodies)
        )

        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
        p50, p95, p99 = q[49], q[94], q[98]
        print("Webhook benchmark (SQLite + SQLite task queue, one process, Django test client)")
        print(
            f"  deliveries            {len(deliveries)} ({len(deliveries) - len(bodies)} duplicates)"
        )
        if delivered < len(deliveries):
            print(
                f"  [acknowledgement stopped at the {ack_limit:.0f} s deadline"
                f" after {delivered} of {len(deliveries)} deliveries]"
            )
        print(
            f"  acknowledgement       p50 {p50:.2f} ms  p95 {p95:.2f} ms  p99 {p99:.2f} ms  "
            f"max {max(latencies):.2f} ms  ({len(deliveries) / ack_elapsed:.0f} deliveries/s)"
        )
        print(f"  baseline              p95 under {ACK_P95_TARGET_MS:.0f} ms (target)")
        print(
            f"  processing            {processed} tasks queued={queued} in {proc_elapsed:.2f} s: "
            f"{processed / proc_elapsed:.0f} events/s (one worker)"
        )
        if processed < queued:
            print(
                f"  [processing stopped at the {proc_limit:.0f} s deadline"
                f" after {processed} of {queued} tasks]"
            )
        print(f"  baseline              {PROCESS_TARGET_PER_S:.0f} events/s per worker (target)")
        print(
            f"  check                 {credited.count()}/{args.payments} payments credited once, "
            f"balance {balance}, ledger {problems or 'clean'}"
        )
        if not ok:
            raise SystemExit("FAILED: the ledger does not match the deliveries")


if __name__ == "__main__":
    main()
