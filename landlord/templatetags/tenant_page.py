"""What the tenant's home renders most often, made cheap: it is the page every
tenant's phone asks for, and re-renders its panel on every balance change.

``{{ v.usage|usage_bars }}``: the last hour's twelve bars in one piece of HTML.
As twelve loops of template variables, each number went through Django's
localisation (a number format looked up per value) for the same digits: the
page uses no thousand separator (``USE_THOUSAND_SEPARATOR`` is off), so an
integer reads as ``str(int)`` either way.

``{% url_cached 'tenant:usage' tenancy.pk %}``: ``{% url %}`` for a view name
and positional arguments, each address reversed once per process (per URLconf
and script prefix, which the key holds) instead of on every render.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

from django import template
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

if TYPE_CHECKING:
    from landlord.selectors import UsageBar

register = template.Library()


@register.filter
def usage_bars(bars: Iterable[UsageBar]) -> SafeString:
    return format_html_join(
        "",
        '<span class="bar" style="--h: {}%" title="{}: {} Wh"></span>',
        ((int(b.pct), b.label, int(b.wh)) for b in bars),
    )


@lru_cache(maxsize=8192)
def _reverse(urlconf: str | None, prefix: str, view_name: str, args: tuple[object, ...]) -> str:
    return reverse(view_name, urlconf=urlconf, args=args)


@register.simple_tag
def url_cached(view_name: str, *args: object) -> str:
    """The address of ``view_name`` with ``args`` (escaped as ``{% url %}`` is)."""
    return _reverse(get_urlconf(), get_script_prefix(), view_name, args)
