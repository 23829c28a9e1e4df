"""On SQLite a prepared query's constants are written into its SQL, so that SQLite
does not plan it again on every run (config/prepared.py); what it answers stays
what the queryset answers."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import BigIntegerField, CharField
from django.utils import timezone

from config.prepared import Param, Prepared, _inline_constants, _Slot
from meters.models import CutoffNotice
from payments.models import Account


def test_whole_numbers_and_plain_words_are_written_in():
    slot = _Slot("tenancy_id", BigIntegerField())
    sql, params = _inline_constants(
        "SELECT 1 WHERE a = %s AND b = %s AND c LIKE '%%x' AND d = %s AND e = %s AND f = %s",
        (Account.Kind.ADVANCE, -1, slot, "it's", True),
    )
    assert sql == (
        "SELECT 1 WHERE a = 'advance' AND b = -1 AND c LIKE '%%x' AND d = %s AND e = %s AND f = %s"
    )
    assert params == (slot, "it's", True)  # the Param, a quote, a truth value: still bound


def test_sql_that_does_not_match_its_parameters_is_left_as_it_is():
    assert _inline_constants("SELECT %s", (1, 2)) == ("SELECT %s", (1, 2))
    assert _inline_constants("SELECT %s, %s", (1,)) == ("SELECT %s, %s", (1,))


@pytest.mark.django_db
def test_a_prepared_query_with_constants_answers_as_its_queryset(personas):
    # given a tenancy's open and closed cut-off notices (the open one is in a partial index)
    tenancy = personas.a.prepaid_tenancy
    now = timezone.now()
    for status in (CutoffNotice.Status.SCHEDULED, CutoffNotice.Status.CANCELLED):
        CutoffNotice.objects.create(
            landlord=tenancy.landlord,
            unit=tenancy.unit,
            tenancy=tenancy,
            noticed_at=now,
            earliest_at=now,
            balance_minor=0,
            status=status,
        )
    query: Prepared[CutoffNotice] = Prepared(
        lambda: CutoffNotice.objects.filter(
            tenancy_id=Param("tenancy_id", BigIntegerField()),
            status=CutoffNotice.Status.SCHEDULED,
            close_reason=Param("reason", CharField()),
        )
    )
    # when it runs, twice
    expected = list(
        CutoffNotice.objects.filter(
            tenancy_id=tenancy.pk, status=CutoffNotice.Status.SCHEDULED, close_reason=""
        )
    )
    assert len(expected) == 1
    # then it answers as the queryset does
    assert query.run(tenancy_id=tenancy.pk, reason="") == expected
    assert query.run(tenancy_id=tenancy.pk, reason="") == expected
    assert query.run(tenancy_id=tenancy.pk + 1000, reason="") == []
    sql = query._compiled[connection.alias].sql
    if connection.vendor == "sqlite":
        assert "'scheduled'" in sql
    else:
        assert "'scheduled'" not in sql
