from __future__ import annotations

import pytest

from payments.models import ConnectAccount

from .stripe_fake import CONNECT_SECRET, PLATFORM_SECRET, FakeStripeHTTP

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
