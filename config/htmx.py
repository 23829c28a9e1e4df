"""htmx requests and the status a form error is answered with.

A form error is an answer to show, not a failed request. htmx 2 swaps no 4xx
response by default, and in debug mode django-htmx's script replaces the whole
page with any 400 answer to an htmx request. So a form error answered to htmx
(a partial's ``hx-post``, a boosted form) is a 422, which ``static/app.js``
tells htmx to swap in like a 200; a plain POST without JavaScript keeps its 400.
"""

from __future__ import annotations

from django.http import HttpRequest


def is_htmx(request: HttpRequest) -> bool:
    """Sent by htmx (``HX-Request``, read by django-htmx's middleware), not a boosted page."""
    htmx = getattr(request, "htmx", None)
    return htmx is not None and bool(htmx) and not htmx.boosted


def form_error_status(request: HttpRequest) -> int:
    """The status of a page or partial that shows a form's errors: 422 to htmx (boosted
    or not), 400 to a plain request."""
    return 422 if getattr(request, "htmx", False) else 400
