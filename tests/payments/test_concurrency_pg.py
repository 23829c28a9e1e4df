"""Concurrent posting on PostgreSQL: separate connections, real row locks.

Each worker thread has its own database connection (Django connections are
per thread), so these are genuinely concurrent transactions. SQLite
serialises all writers, so these tests run only on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections

from meters.models import Meter
from meters.readings import ReadingInput, readings_record
from payments.ledger import Leg, landlord_account, ledger_post, tenant_account
from payments.models import Account, LedgerTransaction, Posting

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs PostgreSQL (real concurrent writers)"
    ),
]


def _in_threads(n: int, work: Callable[[int], object]) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_concurrent_postings_to_one_account_lose_no_update(tpersonas):
    world = tpersonas.a
    tenant = tenant_account(tenancy=world.prepaid_tenancy)
    clearing = landlord_account(landlord=world.landlord, kind=Account.Kind.CLEARING, currency="GBP")
    revenue = landlord_account(landlord=world.landlord, kind=Account.Kind.REVENUE, currency="GBP")
    workers, each = 6, 20

    def work(i: int) -> None:
        for j in range(each):
            # alternate the order of accounts in a posting: locks are still taken in pk order
            legs = (
                [Leg(debit=clearing, credit=tenant, amount_minor=7)]
                if j % 2
                else [Leg(debit=tenant, credit=revenue, amount_minor=3)]
            )
            ledger_post(
                landlord_id=world.landlord.pk,
                kind=LedgerTransaction.Kind.ADJUSTMENT,
                idempotency_key=f"w{i}-{j}",
                legs=legs,
            )

    _in_threads(workers, work)
    tenant.refresh_from_db()
    assert Posting.objects.count() == workers * each
    assert tenant.balance_minor == workers * (each // 2) * (7 - 3)


def test_one_idempotency_key_submitted_concurrently_posts_once(tpersonas):
    world = tpersonas.a
    tenant = tenant_account(tenancy=world.prepaid_tenancy)
    clearing = landlord_account(landlord=world.landlord, kind=Account.Kind.CLEARING, currency="GBP")

    def work(_i: int) -> tuple[int, bool]:
        txn, created = ledger_post(
            landlord_id=world.landlord.pk,
            kind=LedgerTransaction.Kind.PAYMENT,
            idempotency_key="payment:same",
            legs=[Leg(debit=clearing, credit=tenant, amount_minor=500)],
        )
        return txn.pk, created

    results = [r for r in _in_threads(8, work) if isinstance(r, tuple)]
    assert len(results) == 8
    assert len({pk for pk, _created in results}) == 1
    assert sum(1 for _pk, created in results if created) == 1
    tenant.refresh_from_db()
    assert tenant.balance_minor == 500
    assert LedgerTransaction.objects.filter(idempotency_key="payment:same").count() == 1


def test_concurrent_frames_from_two_devices_and_a_top_up(tpersonas):
    """Usage of two units and payments hit the same landlord revenue account at once."""
    world = tpersonas.a
    base = datetime(2026, 1, 14, tzinfo=UTC)
    devices = [world.prepaid_device.device, world.postpaid_device.device]
    tenant = tenant_account(tenancy=world.prepaid_tenancy)
    clearing = landlord_account(landlord=world.landlord, kind=Account.Kind.CLEARING, currency="GBP")

    def work(i: int) -> None:
        if i < 2:
            for frame in range(10):
                readings_record(
                    device_id=devices[i].pk,
                    readings=[
                        ReadingInput(
                            seq=frame * 10 + k,
                            taken_at=base + timedelta(minutes=frame * 10 + k),
                            register_wh=(frame * 10 + k) * 100,
                        )
                        for k in range(10)
                    ],
                )
        else:
            for j in range(10):
                ledger_post(
                    landlord_id=world.landlord.pk,
                    kind=LedgerTransaction.Kind.PAYMENT,
                    idempotency_key=f"pay-{j}",
                    legs=[Leg(debit=clearing, credit=tenant, amount_minor=100)],
                )

    _in_threads(3, work)
    for device in devices:
        meter = Meter.objects.get(device=device)
        assert meter.posted_minor == 297  # 99 steps of 100 Wh at 30p
    revenue = Account.objects.get(landlord=world.landlord, kind=Account.Kind.REVENUE)
    assert revenue.balance_minor == 2 * 297
