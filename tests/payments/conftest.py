from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.test import Client

from payments import tariffs
from payments.models import ConnectAccount, Tariff

from .stripe_fake import CONNECT_SECRET, PLATFORM_SECRET, FakeStripeHTTP, deliver

ACCT_A = "acct_1QfakeLandlordA"
ACCT_B = "acct_1QfakeLandlordB"


@pytest.fixture
def fake_stripe(settings, monkeypatch) -> FakeStripeHTTP:
    """Stripe switched on (test keys) with every API call served by the fake client."""
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    settings.STRIPE_WEBHOOK_SECRET = PLATFORM_SECRET
    settings.STRIPE_CONNECT_WEBHOOK_SECRET = CONNECT_SECRET
    settings.STRIPE_APPLICATION_FEE_BPS = 100
    settings.STRIPE_APPLICATION_FEE_FIXED_MINOR = 0
    fake = FakeStripeHTTP()
    monkeypatch.setattr("payments.stripe_gateway.HTTP_CLIENT", fake)
    return fake


@pytest.fixture
def connected(personas, fake_stripe) -> dict[str, ConnectAccount]:
    """Both landlords onboarded and able to take payments."""
    return {
        "a": ConnectAccount.objects.create(
            landlord=personas.a.landlord,
            stripe_account_id=ACCT_A,
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
        ),
        "b": ConnectAccount.objects.create(
            landlord=personas.b.landlord,
            stripe_account_id=ACCT_B,
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
        ),
    }


@pytest.fixture
def postpaid_tou(personas):
    return _postpaid_tou(personas.a)


@pytest.fixture
def tpostpaid_tou(tpersonas):
    """``postpaid_tou`` in a database whose transactions really commit."""
    return _postpaid_tou(tpersonas.a)


def _postpaid_tou(world):
    tariff = Tariff.objects.create(landlord=world.landlord, name="Night saver", currency="GBP")
    tariffs.tariff_version_create(
        tariff=tariff,
        valid_from=date(2020, 1, 1),
        rates=[("", 0, Decimal("20")), ("", 2000, Decimal("30")), ("night", 0, Decimal("10"))],
        windows=(("night", "all", 0, 7),),
        standing_charge_per_day_minor=Decimal("50"),
        tax_percent=Decimal("5"),
        tax_inclusive=False,
    )
    world.postpaid.tariff = tariff
    world.postpaid.save()
    world.postpaid_tenancy.start_date = date(2025, 12, 1)
    world.postpaid_tenancy.save()
    return world


@pytest.fixture
def hook(django_capture_on_commit_callbacks):
    """Deliver a signed provider event and run what it queued on commit."""
    client = Client()

    def send(evt):
        with django_capture_on_commit_callbacks(execute=True):
            resp = deliver(client, evt)
        assert resp.status_code == 200
        return resp

    return send
