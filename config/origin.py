"""Browser sockets accept only pages of this site: Django's CSRF Origin rule, for WebSockets.

Channels' ``AllowedHostsOriginValidator`` compares only the Origin's host
name with ``ALLOWED_HOSTS``: a page served over plain HTTP, or on another
port of the same host, could open a socket with the user's session. Here the
Origin must equal this socket's own origin (scheme, host and port: ``wss``
counts as ``https``, ``ws`` as ``http``, the Host header must be an allowed
host), or be listed in ``CSRF_TRUSTED_ORIGINS``, exactly as Django's CSRF
check treats a form post.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain


def _allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        # What Django's request.get_host() allows in the same case.
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def _is_secure(scope: dict[str, Any], headers: dict[bytes, str]) -> bool:
    proxy_header = settings.SECURE_PROXY_SSL_HEADER
    if proxy_header:
        name, secure_value = proxy_header
        # "HTTP_X_FORWARDED_PROTO" in the META spelling is "x-forwarded-proto" here.
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        if header in headers:
            return headers[header].split(",", 1)[0].strip() == secure_value
    return scope.get("scheme", "ws") in ("wss", "https")


def origin_allowed(scope: dict[str, Any]) -> bool:
    headers = _headers(scope.get("headers", ()))
    origin = headers.get(b"origin")
    if not origin:
        return False
    host = headers.get(b"host", "")
    domain, _port = split_domain_port(host)
    if domain and validate_host(domain, _allowed_hosts()):
        own = f"{'https' if _is_secure(scope, headers) else 'http'}://{host}"
        if origin == own:
            return True
    trusted = list(settings.CSRF_TRUSTED_ORIGINS)
    if origin in [t for t in trusted if "*" not in t]:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    return any(
        is_same_domain(parsed.netloc, pattern.split("://", 1)[1][1:])
        for pattern in trusted
        if "://*." in pattern and pattern.split("://", 1)[0] == parsed.scheme
    )


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, str]:
    found: dict[bytes, str] = {}
    for name, value in raw:
        found.setdefault(name.lower(), value.decode("latin1"))
    return found


class SameOriginValidator:
    """ASGI middleware in front of browser sockets: refuse any other Origin."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
