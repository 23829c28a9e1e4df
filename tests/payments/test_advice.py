"""Prepaid or postpaid advice: the pure rules over hand-made histories, and the page."""

from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from payments.advice import POSTPAID, PREPAID, History, advise, variation
from payments.ledger import Leg, landlord_account, ledger_post, tenant_account
from payments.models import Account, Payment

STEADY = [8000, 8200, 7900, 8100] * 5  # 20 days, varies by about 1.3%
SWINGING = [1000, 15000, 2000, 20000, 500] * 4  # 20 days, varies by about 105%


def _kinds(advice) -> list[str]:
    return [r.kind for r in advice.supporting]


def test_variation_is_standard_deviation_over_mean():
    assert variation([10, 10, 10]) == 0
    assert variation([5, 15]) == 0.5  # mean 10, deviation 5
    assert variation([7]) is None
    assert variation([0, 0]) is None


def test_a_new_tenancy_gets_no_suggestion():
    advice = advise(History(mode=PREPAID, daily_wh=STEADY[:10]))
    assert advice.suggested is None and advice.reasons == ()


def test_steady_usage_and_bills_paid_on_time_suggest_postpaid():
    advice = advise(History(mode=PREPAID, daily_wh=STEADY, bills_due=3, bills_late=0))
    assert advice.suggested == POSTPAID and advice.is_change
    assert _kinds(advice) == ["bills_on_time", "steady_usage"]
    steady = advice.supporting[1]
    assert steady.value == 1 and steady.of == 20


def test_variable_usage_and_failed_payments_suggest_prepaid():
    advice = advise(History(mode=POSTPAID, daily_wh=SWINGING, payments_tried=5, payments_failed=2))
    assert advice.suggested == PREPAID
    assert set(_kinds(advice)) == {"variable_usage", "payments_failed"}


def test_arrears_outweigh_one_good_sign():
    # steady usage (postpaid, 1) against arrears (prepaid, 2)
    advice = advise(History(mode=POSTPAID, daily_wh=STEADY, arrears_minor=4500))
    assert advice.suggested == PREPAID
    assert advice.supporting[0].kind == "arrears" and advice.supporting[0].minor == 4500
    assert [r.kind for r in advice.against] == ["steady_usage"]


def test_late_bills_count_by_number_or_share():
    assert advise(History(mode=POSTPAID, bills_due=10, bills_late=2)).suggested == PREPAID
    assert advise(History(mode=POSTPAID, bills_due=3, bills_late=1)).suggested == PREPAID
    # one late bill in six is neither a good nor a bad sign
    assert advise(History(mode=POSTPAID, bills_due=6, bills_late=1)).suggested is None
    # a single bill paid on time is too little to go on
    assert advise(History(mode=PREPAID, bills_due=1)).suggested is None


def test_regular_top_ups_suggest_postpaid_irregular_ones_prepaid():
    regular = advise(History(mode=PREPAID, topup_gap_days=[7, 7.5, 6.5, 7]))
    assert regular.suggested == POSTPAID
    assert regular.supporting[0].kind == "regular_topups" and regular.supporting[0].of == 5
    irregular = advise(History(mode=PREPAID, topup_gap_days=[1, 20, 0.5, 30, 1]))
    assert irregular.suggested == PREPAID
    assert irregular.supporting[0].kind == "irregular_topups"
    # two top-ups make one gap: not enough to call them regular
    assert advise(History(mode=PREPAID, topup_gap_days=[7])).suggested is None


def test_a_tie_keeps_the_current_mode():
    history = History(
        mode=POSTPAID, daily_wh=SWINGING, bills_due=4, bills_late=0
    )  # variable usage (prepaid) against bills on time (postpaid)
    advice = advise(history)
    assert advice.suggested == POSTPAID and not advice.is_change
    assert _kinds(advice) == ["bills_on_time"]
    assert [r.kind for r in advice.against] == ["variable_usage"]


def test_usage_between_steady_and_variable_says_nothing():
    middling = [4000, 8000, 12000, 6000] * 5  # about 40%
    assert advise(History(mode=PREPAID, daily_wh=middling)).suggested is None


# --- the billing-mode page ------------------------------------------------------------


def test_the_billing_mode_page_suggests_with_reasons(personas):
    world = personas.a
    tenancy = world.prepaid_tenancy
    # a prepaid debt and two failed payments
    clearing = landlord_account(landlord=world.landlord, kind=Account.Kind.CLEARING, currency="GBP")
    ledger_post(
        landlord_id=world.landlord.pk,
        kind="adjustment",
        idempotency_key="advice-debt",
        legs=[Leg(debit=tenant_account(tenancy=tenancy), credit=clearing, amount_minor=1250)],
    )
    for _ in range(2):
        Payment.objects.create(
            landlord=world.landlord,
            tenancy=tenancy,
            amount_minor=1000,
            currency="GBP",
            provider="dev",
            status=Payment.Status.FAILED,
            created_at=timezone.now() - timedelta(days=3),
        )
    client = Client()
    client.force_login(world.staff)
    page = client.get(reverse("landlord:people:billing_mode", args=[world.prepaid.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "We suggest prepaid (as now)" in html
    assert "£12.50 is owed in arrears" in html
    assert "2 of 2 payments failed" in html
    # advice only: nothing changed
    world.prepaid.refresh_from_db()
    assert world.prepaid.billing_mode == PREPAID
