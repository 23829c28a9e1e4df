"""config.prepared: a query compiled once gives what the queryset gives, for each run's values."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import BigIntegerField, CharField, DateField, Q

from config.prepared import Param, Prepared
from landlord.models import Tenancy


def _tenancies() -> Prepared[Tenancy]:
    return Prepared(
        lambda: (
            Tenancy.objects.select_related("unit__property")
            .filter(
                Q(pk=Param("pk", BigIntegerField())) | Q(unit__name=Param("name", CharField())),
                start_date__lte=Param("day", DateField()),
                landlord_id=Param("landlord", BigIntegerField()),
            )
            .order_by("pk")
        )
    )


def test_each_run_reads_with_its_own_values(personas, django_assert_num_queries):
    a = personas.a
    tenancies = _tenancies()
    day = a.prepaid_tenancy.start_date
    for tenancy, other in [(a.prepaid_tenancy, a.postpaid), (a.postpaid_tenancy, a.prepaid)]:
        expected = list(
            Tenancy.objects.filter(
                Q(pk=tenancy.pk) | Q(unit__name=other.name),
                start_date__lte=day,
                landlord_id=a.landlord.pk,
            ).order_by("pk")
        )
        with django_assert_num_queries(1):  # the related rows came with them
            found = tenancies.run(pk=tenancy.pk, name=other.name, day=day, landlord=a.landlord.pk)
            assert [t.unit.property.name for t in found] == [a.prop.name] * 2
        assert found == expected
    before = day - timedelta(days=1)
    assert tenancies.run(pk=a.prepaid_tenancy.pk, name="", day=before, landlord=a.landlord.pk) == []


def test_values_rows_and_a_derived_query(personas):
    tenancy = personas.a.prepaid_tenancy
    names: Prepared[str] = Prepared(
        lambda: Tenancy.objects.filter(pk=Param("pk", BigIntegerField())).values_list(
            "unit__name", flat=True
        )
    )
    assert names.run(pk=tenancy.pk) == [tenancy.unit.name]
    assert names.run(pk=personas.b.prepaid_tenancy.pk) == [personas.b.prepaid.name]
    # A queryset derived from a plain one is compiled as usual.
    assert Tenancy.objects.filter(pk=tenancy.pk).count() == 1


def test_the_values_must_be_the_query_s(personas):
    names: Prepared[Tenancy] = Prepared(
        lambda: Tenancy.objects.filter(pk=Param("pk", BigIntegerField()))
    )
    with pytest.raises(TypeError):
        names.run(pk=1, other=2)
