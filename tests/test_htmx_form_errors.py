"""A form error is a 400 to a plain request and a 422 to htmx (``config.htmx``), which
``static/app.js`` swaps in (``tests/browser/test_form_error_swap.py``): a 400
would not be swapped, and in debug mode django-htmx's script replaces the whole
page with it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import Personas

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Refused:
    """One refused form: who sends it, where, with what, and a word of the error shown."""

    who: Callable[[Personas], Any]
    url: Callable[[Personas], str]
    data: dict[str, str]
    error: str
    method: str = "post"


CASES = {
    "property": Refused(
        lambda p: p.a.staff,
        lambda p: reverse("landlord:property_new"),
        {"name": "Canal Court", "address": "2 Canal St", "timezone": "Europe/Londn"},
        "time zone",
    ),
    "team invitation": Refused(
        lambda p: p.a.staff,
        lambda p: reverse("landlord:staff:invite"),
        {"email": "not-an-address"},
        'value="not-an-address"',
    ),
    "relay override": Refused(
        lambda p: p.a.staff,
        lambda p: f"/landlord/units/{p.a.prepaid.pk}/override/",
        {"state": "off", "reason": ""},
        "Give a reason",
    ),
    "exports": Refused(
        lambda p: p.a.staff,
        lambda p: reverse("landlord:exports"),
        {"kind": "units", "from": "2026-02-01", "to": "2026-01-01"},
        "before its start",
        method="get",
    ),
    "tenant notifications": Refused(
        lambda p: p.a.prepaid_tenant,
        lambda p: reverse("tenant:notifications", args=[p.a.prepaid_tenancy.pk]),
        {"low_credit_threshold": "abc"},
        "Enter an amount",
    ),
    "payment plan request": Refused(
        lambda p: p.a.prepaid_tenant,
        lambda p: reverse("tenant:plan_request", args=[p.a.prepaid_tenancy.pk]),
        {"weekly": "-3", "message": "I lost my job"},
        "above zero",
    ),
    "top-up": Refused(
        lambda p: p.a.prepaid_tenant,
        lambda p: reverse("payments:topup", args=[p.a.prepaid_tenancy.pk]),
        {"amount": "12.345"},
        'id="amount-error"',
    ),
    "automatic payments": Refused(
        lambda p: p.a.prepaid_tenant,
        lambda p: reverse("payments:automatic", args=[p.a.prepaid_tenancy.pk]),
        {"auto_topup_enabled": "on", "threshold": "5", "amount": "20", "monthly_cap": "100"},
        "Save a card first",
    ),
}


def _send(case: Refused, personas: Personas, headers: dict[str, str]):
    client = Client()
    client.force_login(case.who(personas))
    send = client.get if case.method == "get" else client.post
    return send(case.url(personas), case.data, headers=headers)


@pytest.mark.parametrize("name", CASES)
def test_a_form_error_is_a_400_without_htmx_and_a_422_with_it(personas, name):
    case = CASES[name]
    plain = _send(case, personas, {})
    assert plain.status_code == 400 and case.error in plain.content.decode()
    htmx = _send(case, personas, {"HX-Request": "true"})
    assert htmx.status_code == 422 and case.error in htmx.content.decode()
    boosted = _send(case, personas, {"HX-Request": "true", "HX-Boosted": "true"})
    assert boosted.status_code == 422 and case.error in boosted.content.decode()
