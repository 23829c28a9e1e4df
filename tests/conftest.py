from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from payments.ledger import ledger_verify

from .factories import LandlordWorld, make_landlord_world


def _uses_db(request: pytest.FixtureRequest) -> str | None:
    marker = request.node.get_closest_marker("django_db")
    names = request.fixturenames
    if "transactional_db" in names or (marker and marker.kwargs.get("transaction")):
        return "transactional_db"
    if marker or "db" in names:
        return "db"
    return None


@pytest.fixture(autouse=True)
def ledger_invariants(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test that touched the database, the whole ledger must verify.

    It also lets the SQLite test flush empty the append-only tables (see the
    payments 0002 migration): the flush runs after this fixture's teardown.
    """
    kind = _uses_db(request)
    if kind is None:
        yield
        return
    request.getfixturevalue(kind)
    sqlite = connection.vendor == "sqlite"
    if sqlite:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM ledger_maintenance")
    yield
    problems = ledger_verify()
    if sqlite and kind == "transactional_db":
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO ledger_maintenance (reason) VALUES ('test flush')")
    assert problems == [], problems


@dataclass
class Personas:
    a: LandlordWorld
    b: LandlordWorld
    admin: object


@pytest.fixture
def personas(db: None) -> Personas:
    User = get_user_model()
    admin = User.objects.create_superuser("admin", password="pw", email="admin@example.com")
    return Personas(a=make_landlord_world("a"), b=make_landlord_world("b"), admin=admin)


@pytest.fixture
def tpersonas(transactional_db: None) -> Personas:
    User = get_user_model()
    admin = User.objects.create_superuser("admin", password="pw", email="admin@example.com")
    return Personas(a=make_landlord_world("a"), b=make_landlord_world("b"), admin=admin)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    """A channel-layer instance per test: each async test has its own event loop,
    and a channels-redis layer must not be shared between loops (a server has
    one loop for its life)."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
