"""HTTP middleware of our own."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class SyncChain:
    """Innermost in ``MIDDLEWARE``: the HTTP middleware chain runs synchronously.

    Django adapts each middleware to the mode of the handler inside it. Every
    HTTP view here is synchronous and most middleware (sessions, CSRF, auth,
    messages) is written as synchronous hooks, yet under ASGI an async-capable
    chain runs each of those hooks through a thread hop of its own: about
    fifteen per request. With a sync-only middleware innermost, Django adapts
    the chain once and a request runs in one thread: a bare view answers in
    well under half the time (bench/tenant.py's baseline). WebSockets do not
    pass through here. The server's own handler (config/handler.py) goes
    further and loads the chain synchronously, as under WSGI; this keeps
    Django's stock ASGI handler (e.g. the test suite's ``AsyncClient``) to
    one hop as well.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)
