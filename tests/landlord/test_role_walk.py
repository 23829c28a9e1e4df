"""Every landlord page, walked as a staff member: the owner-only actions of
docs/roles.md answer 403 (and change nothing), everything else does not.

The routes come from the URL resolver, so a new landlord page is walked without
a line here; a new owner-only action needs its line in ``OWNER_ONLY``, or this
test fails for it (a 403 where none was expected).
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from landlord.models import AuditEvent
from tests.landlord.test_access import TENANT, _kwargs, build_world, http_routes

# (route, method) -> form data: owners only (docs/roles.md); staff get 403.
OWNER_ONLY: dict[tuple[str, str], dict[str, str]] = {
    ("landlord:override", "post"): {"state": "off", "reason": "unsafe"},
    ("landlord:people:billing_mode", "post"): {"mode": "postpaid", "confirm": "on"},
    ("landlord:people:mode_schedule", "post"): {"mode": "postpaid", "at": "2026-01-01T09:00"},
    ("landlord:people:mode_schedule_cancel", "post"): {},
    ("landlord:setup", "get"): {},
    ("landlord:property_new", "get"): {},
    ("landlord:property_new", "post"): {},
    ("landlord:property_edit", "get"): {},
    ("landlord:property_edit", "post"): {},
    ("landlord:unit_new", "get"): {},
    ("landlord:unit_new", "post"): {},
    ("landlord:unit_import", "get"): {},
    ("landlord:unit_import", "post"): {},
    ("landlord:unit_edit", "get"): {},
    ("landlord:unit_edit", "post"): {},
    ("landlord:unit_archive", "post"): {},
    ("landlord:tariff_new", "get"): {},
    ("landlord:tariff_new", "post"): {},
    ("landlord:tariff", "get"): {},
    ("landlord:tariff", "post"): {},
    ("landlord:staff:invite", "post"): {"email": "x@example.com", "role": "owner"},
    ("landlord:staff:cancel", "post"): {},
    ("landlord:staff:role", "post"): {"role": "staff"},
    ("landlord:staff:remove", "post"): {},
    ("payments:refund", "get"): {},
    ("payments:refund", "post"): {"amount": "1", "reason": "goodwill"},
    ("payments:connect", "get"): {},
    ("payments:connect_start", "get"): {},
    ("payments:connect_start", "post"): {},
}
# Landlord pages outside the landlord's URL namespace.
ELSEWHERE = ("payments:refund", "payments:connect", "payments:connect_start")


def _landlord_routes() -> list[str]:
    return sorted(
        name for name in http_routes() if name.startswith("landlord:") or name in ELSEWHERE
    )


def _cases():
    for name in _landlord_routes():
        for method in ("get", "post"):
            yield pytest.param(name, method, id=f"{name}-{method}")


def test_the_owner_only_table_names_real_routes():
    routes = set(_landlord_routes())
    assert {name for name, _ in OWNER_ONLY} <= routes


@pytest.mark.parametrize(("name", "method"), list(_cases()))
def test_staff_get_403_exactly_on_owner_only_actions(
    everyone, django_capture_on_commit_callbacks, settings, tmp_path, name, method
):
    settings.MEDIA_ROOT = tmp_path
    # given landlord A's objects, as in the access table
    world = build_world(everyone, TENANT)
    url = reverse(name, kwargs=_kwargs(world, http_routes()[name]))
    data = OWNER_ONLY.get((name, method), {})
    staff = Client()
    staff.force_login(everyone.a_staff)
    audit_rows = AuditEvent.objects.count()
    # when a staff member asks
    with django_capture_on_commit_callbacks(execute=True):
        resp = getattr(staff, method)(url, data)
    # then
    if (name, method) in OWNER_ONLY:
        assert resp.status_code == 403, (name, method, resp.status_code)
        assert "Only an owner" in resp.content.decode()
        assert AuditEvent.objects.count() == audit_rows  # nothing was done
        owner = Client()
        owner.force_login(everyone.a.staff)
        assert getattr(owner, method)(url, data).status_code != 403
    else:
        assert resp.status_code != 403, (name, method)
