"""Late fees leave out the part of a bill under an open dispute (payments.late_fees),
read from real dispute rows rather than a stand-in."""

from __future__ import annotations

import pytest

from disputes import services
from payments.late_fees import amount_in_dispute

from .conftest import open_on_invoice

pytestmark = pytest.mark.django_db


def test_the_disputed_part_of_a_bill_is_held_only_while_the_case_is_open(personas):
    tenancy = personas.a.prepaid_tenancy
    named = open_on_invoice(tenancy, amount=1000, total=4000, month=1)
    unnamed = open_on_invoice(tenancy, amount=None, total=4000, month=2)
    assert named.invoice is not None and unnamed.invoice is not None
    assert amount_in_dispute(named.invoice) == 1000
    # a dispute that names no amount holds the whole bill
    assert amount_in_dispute(unnamed.invoice) == 4000
    services.dispute_withdraw(dispute=named, actor=tenancy.tenant)
    services.dispute_reject(dispute=unnamed, actor=personas.admin, note="The bill is right.")
    assert amount_in_dispute(named.invoice) == 0
    assert amount_in_dispute(unnamed.invoice) == 0
