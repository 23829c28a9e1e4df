from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection

from landlord.models import Tenancy
from payments.ledger import ledger_verify

from .factories import LandlordWorld, make_former_tenancy, make_landlord_world, make_staff_member


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


PERSONA_NAMES = (
    "anonymous",
    "landlord_a",
    "landlord_a_staff",
    "landlord_b",
    "tenant_a1",
    "former_tenant_a",
    "tenant_b1",
    "admin",
)


@dataclass
class Everyone(Personas):
    """The personas plus a staff member of A (landlord_a is an owner) and a tenant
    whose tenancy of A's prepaid unit ended yesterday."""

    a_staff: AbstractBaseUser
    former_tenancy: Tenancy

    def user(self, name: str) -> Any:
        """The user behind a name of ``PERSONA_NAMES`` (None: anonymous)."""
        users: dict[str, Any] = {
            "anonymous": None,
            "landlord_a": self.a.staff,
            "landlord_a_staff": self.a_staff,
            "landlord_b": self.b.staff,
            "tenant_a1": self.a.prepaid_tenant,
            "former_tenant_a": self.former_tenancy.tenant,
            "tenant_b1": self.b.prepaid_tenant,
            "admin": self.admin,
        }
        return users[name]


def _everyone(personas: Personas) -> Everyone:
    return Everyone(
        a=personas.a,
        b=personas.b,
        admin=personas.admin,
        a_staff=make_staff_member(personas.a),
        former_tenancy=make_former_tenancy(personas.a),
    )


@pytest.fixture
def everyone(personas: Personas) -> Everyone:
    return _everyone(personas)


@pytest.fixture
def teveryone(tpersonas: Personas) -> Everyone:
    return _everyone(tpersonas)


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
