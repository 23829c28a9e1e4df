"""What the tenant's home renders most often, made cheap: it is the page every
tenant's phone asks for, and re-renders its panel on every balance change.

``{{ v.usage|usage_bars }}``: the last hour's twelve bars in one piece of HTML.
As twelve loops of template variables, each number went through Django's
localisation (a number format looked up per value) for the same digits: the
page uses no thousand separator (``USE_THOUSAND_SEPARATOR`` is off), so an
integer reads as ``str(int)`` either way.

``{% url_cached 'tenant:usage' tenancy.pk %}``: ``{% url %}`` for a view name
and positional arguments, each address reversed once per process (per URLconf
and script prefix, which the key holds) instead of on every render; for names
whose namespace has one instance (``{% url %}`` may pick an instance by the
current app). ``{% static_cached 'app.css' %}``: ``{% static %}``, each file's
address worked out once per process (the storage's address of a name does not
change while the process runs).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

from django import template
from django.templatetags.static import static
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

if TYPE_CHECKING:
    from landlord.selectors import UsageBar

register = template.Library()


@register.filter
def usage_bars(bars: Iterable[UsageBar]) -> SafeString:
    # Integers need no escaping; the label is escaped as {{ b.label }} was.
    return mark_safe(  # noqa: S308
        "".join(
            f'<span class="bar" style="--h: {int(b.pct)}%" title="{escape(b.label)}:'
            f' {int(b.wh)} Wh"></span>'
            for b in bars
        )
    )


@lru_cache(maxsize=8192)
def _reverse(urlconf: str | None, prefix: str, view_name: str, args: tuple[object, ...]) -> str:
    return reverse(view_name, urlconf=urlconf, args=args)


@register.simple_tag
def url_cached(view_name: str, *args: object) -> str:
    """The address of ``view_name`` with ``args`` (escaped as ``{% url %}`` is)."""
    return _reverse(get_urlconf(), get_script_prefix(), view_name, args)


@lru_cache(maxsize=256)
def _static(path: str) -> str:
    return static(path)


@register.simple_tag
def static_cached(path: str) -> str:
    """The address of the static file ``path`` (escaped as ``{% static %}`` is)."""
    return _static(path)
