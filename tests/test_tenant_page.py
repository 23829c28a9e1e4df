"""The tenant home's cheap parts give what the general ones gave: the last hour's
bars (energy per 5-minute slot, read with the database's own minute arithmetic,
rendered in one piece) and the addresses reversed once per process."""

from __future__ import annotations

import re

import pytest
from django.template import Context, Template
from django.test import Client
from django.urls import reverse, set_script_prefix
from django.utils import timezone

from landlord import selectors
from landlord.selectors import UsageBar
from tests.landlord.tenant_helpers import reading

pytestmark = pytest.mark.django_db

BAR = re.compile(r'<span class="bar" style="--h: (\d+)%" title="(\d\d:\d\d): (\d+) Wh"></span>')


def test_each_slot_holds_the_energy_of_its_readings(personas):
    # given readings before the hour and in three of its twelve slots
    a = personas.a
    device = a.prepaid_device.device
    for seq, minutes_ago, register_wh in (
        (1, 70, 1000),  # before the window: where the first slot counts from
        (2, 57, 1100),  # slot 0
        (3, 31.5, 1300),  # slot 5, with the next reading in the same slot
        (4, 30.2, 1500),
        (5, 2, 2700),  # slot 11: over a thousand Wh
    ):
        reading(device, seq, minutes_ago, register_wh)
    # when the home is worked out
    now = timezone.now()
    view = selectors.tenancy_view(tenancy=a.prepaid_tenancy, now=now)
    # then each slot holds what its readings add, the peak at full height
    assert [b.wh for b in view.usage] == [100, 0, 0, 0, 0, 400, 0, 0, 0, 0, 0, 1200]
    assert [b.pct for b in view.usage] == [8, 0, 0, 0, 0, 33, 0, 0, 0, 0, 0, 100]
    assert view.usage[-1].label == f"{timezone.localtime(now, view.tz):%H:%M}"


def test_the_page_draws_a_bar_for_each_slot(personas):
    a = personas.a
    reading(a.prepaid_device.device, 1, 70, 1000)
    reading(a.prepaid_device.device, 2, 2, 2234)
    client = Client()
    client.force_login(a.prepaid_tenant)
    body = client.get(reverse("tenant:home", args=[a.prepaid_tenancy.pk])).content.decode()
    bars = BAR.findall(body)
    assert len(bars) == 12
    assert bars[-1][0] == "100" and bars[-1][2] == "1234"  # no thousands separator, as before
    assert [wh for _, _, wh in bars[:-1]] == ["0"] * 11


def test_usage_bars_render_as_the_template_loop_did():
    bars = [UsageBar(label="10:05", wh=1234, pct=100), UsageBar(label="<b>", wh=0, pct=0)]
    loop = Template(
        '{% for b in bars %}<span class="bar" style="--h: {{ b.pct }}%"'
        ' title="{{ b.label }}: {{ b.wh }} Wh"></span>{% endfor %}'
    )
    one_piece = Template("{% load tenant_page %}{{ bars|usage_bars }}")
    context = Context({"bars": bars})
    assert one_piece.render(context) == loop.render(context)
    assert "&lt;b&gt;" in one_piece.render(context)


def test_url_cached_gives_what_url_gives_under_each_script_prefix():
    template = Template("{% load tenant_page %}{% url_cached 'tenant:usage' 7 %}")
    assert template.render(Context()) == reverse("tenant:usage", args=[7])
    set_script_prefix("/submeter/")
    try:
        assert template.render(Context()) == "/submeter/tenant/7/usage/"
    finally:
        set_script_prefix("/")
    assert template.render(Context()) == reverse("tenant:usage", args=[7])
    assert Template("{% load tenant_page %}{% url_cached 'tenant:usage' 8 %}").render(
        Context()
    ) == reverse("tenant:usage", args=[8])
