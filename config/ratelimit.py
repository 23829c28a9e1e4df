"""A small fixed-window rate limiter on the Django cache.

The cache is Redis in production (shared by every worker) and local memory
in the single-process default. One client serves the whole process
(config/cache.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from django.conf import settings

from config.cache import shared


def _key(scope: str, ident: str) -> str:
    digest = hashlib.sha256(ident.encode()).hexdigest()[:32]
    return f"rl:{scope}:{digest}"


def is_limited(*, scope: str, ident: str, limit: int) -> bool:
    return int(shared().get(_key(scope, ident), 0)) >= limit


def limited_many(*, scope: str, idents: list[str], limit: int) -> list[bool]:
    """``is_limited`` for many idents in one cache read."""
    keys = [_key(scope, ident) for ident in idents]
    counts = shared().get_many(keys) if keys else {}
    return [int(counts.get(key, 0)) >= limit for key in keys]


def hit(*, scope: str, ident: str, window_seconds: int) -> int:
    key = _key(scope, ident)
    if shared().add(key, 1, timeout=window_seconds):
        return 1
    try:
        return shared().incr(key)
    except ValueError:  # expired between add and incr
        shared().add(key, 1, timeout=window_seconds)
        return 1


def reset(*, scope: str, ident: str) -> None:
    shared().delete(_key(scope, ident))


def client_address(meta: Mapping[str, object]) -> str:
    """The client's address, trusting X-Forwarded-For only as far as our own proxies.

    With N trusted proxies in front, the client is the Nth address from the
    right of X-Forwarded-For (each proxy appends the address it saw).
    """
    proxies = int(settings.SUBMETER.get("TRUSTED_PROXIES", 0))
    remote = str(meta.get("REMOTE_ADDR", ""))
    if proxies <= 0:
        return remote
    chain = [p.strip() for p in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",") if p.strip()]
    if len(chain) >= proxies:
        return chain[-proxies]
    return remote
