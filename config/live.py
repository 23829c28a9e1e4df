"""Group broadcasts that are safe from any thread, sent only on commit.

The in-memory channel layer belongs to the server's event loop and is not
thread-safe. Code running in a worker thread of a server process (a socket's
database thread, a Huey thread of the single-process mode) therefore hands
the send to the server's loop (``run_coroutine_threadsafe``) and goes on
without waiting for it; the ASGI application notes its loop on every
connection. Elsewhere (a task consumer process) Redis sends go through one
long-lived sender loop per process.

Broadcasts are wake-ups only: every receiver re-reads the database, so a lost
message delays a screen, it never makes it wrong.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from django.db import transaction

from landlord.models import Tenancy, Unit

from .layers import RedisChannelLayer

logger = logging.getLogger(__name__)

_server_loop: asyncio.AbstractEventLoop | None = None
_server_thread: int | None = None


def register_server_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Called by the embedded server once its event loop runs."""
    global _server_loop, _server_thread
    _server_loop = loop
    _server_thread = threading.get_ident() if loop else None


def note_server_loop() -> None:
    """Called by the ASGI application for each connection: the loop it runs on
    becomes the one group sends from worker threads are handed to, so a
    database thread never waits for Redis (uvicorn workers have no other hook
    to say which loop is theirs)."""
    loop = asyncio.get_running_loop()
    if _server_loop is not loop:
        register_server_loop(loop)


def _log_failure(fut: Any) -> None:
    exc = fut.exception()
    if exc is not None:
        logger.warning("group send failed: %r", exc)


_sending: tuple[asyncio.AbstractEventLoop, Any] | None = None
_sender_lock = threading.Lock()


def _sender() -> tuple[asyncio.AbstractEventLoop, Any]:
    """One event loop thread per process, with its own channel-layer instance,
    for sends from threads that have no loop.

    ``async_to_sync`` from such a thread (a task consumer's worker) starts a
    new event loop per call, and channels-redis opens a new connection for
    each new loop: milliseconds per send. This loop keeps its connections. A
    layer instance is not safe to share between loops, hence its own.
    """
    global _sending
    with _sender_lock:
        if _sending is None or _sending[0].is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="group-send", daemon=True).start()
            _sending = (loop, channel_layers.make_backend(DEFAULT_CHANNEL_LAYER))
        return _sending


def group_send(group: str, message: dict[str, Any]) -> None:
    _send(lambda layer: layer.group_send(group, message))


def groups_send(sends: list[tuple[str, dict[str, Any]]]) -> None:
    """``group_send`` for many messages: on Redis one pipelined round trip finds
    the groups anyone listens to, and only those are sent to."""
    if sends:
        _send(lambda layer: _send_many(layer, sends))


async def _send_many(layer: Any, sends: list[tuple[str, dict[str, Any]]]) -> None:
    if isinstance(layer, RedisChannelLayer):
        await layer.group_send_many(sends)
        return
    for group, message in sends:
        await layer.group_send(group, message)


def _send(sending: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _server_loop
    if loop is not None and loop.is_running() and threading.get_ident() != _server_thread:
        fut = asyncio.run_coroutine_threadsafe(sending(layer), loop)
        fut.add_done_callback(_log_failure)
        return
    try:
        if isinstance(layer, InMemoryChannelLayer):
            # Bound to the loop of whoever receives: only async_to_sync reaches it.
            async def send_here() -> None:
                await sending(layer)

            async_to_sync(send_here)()
        else:
            sender_loop, sender_layer = _sender()
            sent = asyncio.run_coroutine_threadsafe(sending(sender_layer), sender_loop)
            sent.result(timeout=10)
    except Exception as exc:  # a lost wake-up must never fail the caller
        logger.warning("group send failed: %r", exc)


def broadcast_on_commit(group: str, message: dict[str, Any]) -> None:
    transaction.on_commit(lambda: group_send(group, message), robust=True)


def broadcast_many_on_commit(sends: list[tuple[str, dict[str, Any]]]) -> None:
    """Many broadcasts, sent together on commit (``groups_send``)."""
    if sends:
        transaction.on_commit(lambda: groups_send(sends), robust=True)


def tenancy_group(tenancy_id: int) -> str:
    return f"tenancy.{tenancy_id}"


def landlord_group(landlord_id: int) -> str:
    return f"landlord.{landlord_id}"


def device_group(device_id: int) -> str:
    return f"device.{device_id}"


def unit_changed(unit: Unit) -> None:
    """Tell the landlord's and the current tenants' screens that a unit changed, on commit."""
    unit_changed_notify(
        landlord_id=unit.landlord_id,
        unit_id=unit.pk,
        tenancy_ids=Tenancy.objects.active().filter(unit=unit).values_list("pk", flat=True),
    )


def unit_changed_message(unit_id: int | None) -> dict[str, object]:
    """The one shape of a "unit changed" wake-up (``unit_id`` None: every row)."""
    return {"type": "unit.changed", "unit_id": unit_id}


def unit_changed_notify(
    *, landlord_id: int, unit_id: int | None, tenancy_ids: Iterable[int] = ()
) -> None:
    """A "unit changed" wake-up, sent on commit to the landlord's
    screens and to the named tenancies' screens (nobody else: a caller that knows
    the tenancy concerned, an ended one included, names it). ``unit_id`` None
    means a landlord-wide change (e.g. the payment account): every row refreshes."""
    msg = unit_changed_message(unit_id)
    broadcast_on_commit(landlord_group(landlord_id), msg)
    for tenancy_id in tenancy_ids:
        broadcast_on_commit(tenancy_group(tenancy_id), msg)


def tenancies_changed_notify(rows: Iterable[tuple[int, int, int]]) -> None:
    """``unit_changed_notify`` for many (landlord, unit, tenancy): the landlord's and
    the tenancy's screens, sent together on commit."""
    sends = []
    for landlord_id, unit_id, tenancy_id in rows:
        msg = unit_changed_message(unit_id)
        sends += [(landlord_group(landlord_id), msg), (tenancy_group(tenancy_id), msg)]
    broadcast_many_on_commit(sends)


def units_changed(units: Iterable[Unit]) -> None:
    """``unit_changed`` for many units: one tenancy query, the broadcasts sent together."""
    by_pk = {unit.pk: unit for unit in units}
    if not by_pk:
        return
    sends = [
        (landlord_group(unit.landlord_id), unit_changed_message(unit.pk)) for unit in by_pk.values()
    ]
    active = Tenancy.objects.active().filter(unit_id__in=list(by_pk))
    for tenancy_id, unit_id in active.values_list("pk", "unit_id"):
        sends.append((tenancy_group(tenancy_id), unit_changed_message(unit_id)))
    broadcast_many_on_commit(sends)
