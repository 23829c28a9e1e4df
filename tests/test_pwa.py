"""The installable app's files (config/pwa.py), and the pages that link them."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from payments.providers import DevelopmentProvider, get_provider
from tests.landlord.test_access import (
    ANON,
    FORMER,
    HTTP,
    TENANT,
    build_world,
    http_routes,
)
from tests.landlord.test_access import _kwargs as url_kwargs


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["manifest", "service_worker", "offline"])
def test_the_app_files_answer_head_as_get(client, name):
    """HEAD is how a browser or a proxy checks a file without fetching it."""
    get = client.get(reverse(name))
    head = client.head(reverse(name))
    assert (head.status_code, get.status_code) == (200, 200)
    assert head["Content-Type"] == get["Content-Type"]
    assert head.content == b""


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["manifest", "service_worker", "offline"])
def test_the_app_files_refuse_changes(client, name):
    assert client.post(reverse(name)).status_code == 405


def _tenant_pages() -> list[str]:
    """The pages only a signed-in tenant (running or former) reaches, from the access
    table: a GET that the tenant gets and a visitor who is not signed in does not."""
    return sorted(
        name
        for name, cases in HTTP.items()
        for case in cases
        if case.method == "get"
        and (case.expected[TENANT] == 200 or case.expected[FORMER] == 200)
        and case.expected[ANON] != 200
    )


def test_the_tenant_pages_include_those_outside_the_tenant_templates():
    pages = _tenant_pages()
    assert {"tenant:home", "disputes:new", "payments:invoice", "password_change"} <= set(pages)


@pytest.mark.parametrize("name", _tenant_pages())
def test_every_tenant_page_links_the_app(everyone, settings, tmp_path, name):
    """A tenant's every page says it belongs to the installable app (its manifest, and
    the script that registers the service worker), wherever its template lives."""
    settings.MEDIA_ROOT = tmp_path  # dispute attachments
    persona = TENANT if HTTP[name][0].expected[TENANT] == 200 else FORMER
    world = build_world(everyone, persona)
    provider = get_provider()
    assert isinstance(provider, DevelopmentProvider)
    provider.complete(payment=world.objects["payment"], outcome="succeeded")
    client = Client()
    client.force_login(everyone.user(persona))
    # when the tenant opens the page
    resp = client.get(reverse(name, kwargs=url_kwargs(world, http_routes()[name])))
    # then, if it is a page (not a file, a fragment or JSON), it links the app
    assert resp.status_code == 200
    if not resp["Content-Type"].startswith("text/html") or b"<html" not in resp.content:
        pytest.skip(f"{name} is not a page ({resp['Content-Type']})")
    html = resp.content.decode()
    assert f'<link rel="manifest" href="{reverse("manifest")}">' in html
    assert f'data-sw="{reverse("service_worker")}"' in html
