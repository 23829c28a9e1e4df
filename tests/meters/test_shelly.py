"""A Shelly Gen2+ session replayed from the frames in Shelly's API documentation.

Frame shapes follow shelly-api-docs.shelly.cloud (gen2): RPC protocol
(request ``{id, src, method, params}``, response ``{id, src, dst, result}``),
Notifications (``NotifyStatus`` / ``NotifyFullStatus`` with ``ts`` and
``switch:0``), and the Switch component (``Switch.Set`` → ``{"was_on": …}``,
``Switch.GetStatus`` → the switch status with ``aenergy.total`` in Wh).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from config.asgi import application
from meters.models import Device, Protocol, Reading
from meters.shelly import reading_time, switch_status
from tests.factories import make_device

from .test_protections import _set_balance

pytestmark = pytest.mark.django_db(transaction=True)
IDENT = "shellyplus1pm-a8032ab12345"


def _switch(output: bool, total: float, ts: float) -> dict:
    return {
        "id": 0,
        "source": "init",
        "output": output,
        "apower": 1200.4 if output else 0.0,
        "voltage": 230.1,
        "current": 5.2 if output else 0.0,
        "aenergy": {"total": total, "by_minute": [20.0, 20.0, 20.0], "minute_ts": int(ts)},
        "temperature": {"tC": 41.3, "tF": 106.3},
    }


def full_status(output: bool, total: float, ts: float) -> str:
    return json.dumps(
        {
            "src": IDENT,
            "dst": "submeter",
            "method": "NotifyFullStatus",
            "params": {
                "ts": ts,
                "ble": {},
                "cloud": {"connected": False},
                "input:0": {"id": 0, "state": False},
                "switch:0": _switch(output, total, ts),
                "sys": {"mac": "A8032AB12345", "restart_required": False, "uptime": 42},
                "wifi": {"sta_ip": "192.168.1.20", "status": "got ip", "rssi": -58},
                "ws": {"connected": True},
            },
        }
    )


def notify_status(ts: float, **switch: object) -> str:
    return json.dumps(
        {
            "src": IDENT,
            "dst": "submeter",
            "method": "NotifyStatus",
            "params": {"ts": ts, "switch:0": {"id": 0, **switch}},
        }
    )


class FakeShelly:
    def __init__(self, comm: WebsocketCommunicator):
        self.comm = comm
        self.output = True
        self.total = 1000.0
        self.requests: list[dict] = []

    async def send(self, text: str) -> None:
        await self.comm.send_to(text_data=text)

    async def next_request(self, timeout: float = 5) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.comm.receive_nothing(timeout=0.02, interval=0.005):
            if loop.time() >= deadline:
                raise TimeoutError("no request from the server")
        frame = json.loads(await self.comm.receive_from(timeout=5))
        self.requests.append(frame)
        return frame

    async def answer(self, request: dict) -> None:
        """Behave as the documented device does."""
        assert request["src"] == "submeter"
        if request["method"] == "Switch.Set":
            was_on = self.output
            self.output = request["params"]["on"]
            result: dict = {"was_on": was_on}
        elif request["method"] == "Switch.GetStatus":
            result = _switch(self.output, self.total, time.time())
        else:
            raise AssertionError(request)
        await self.send(
            json.dumps({"id": request["id"], "src": IDENT, "dst": "submeter", "result": result})
        )

    async def serve_until(self, output: bool, timeout: float = 10) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Until the relay is where asked and the server has verified it.
        while True:
            request = await self.next_request(deadline - loop.time())
            await self.answer(request)
            if request["method"] == "Switch.GetStatus" and self.output == output:
                return


@database_sync_to_async
def _shelly_device(world):
    creds = make_device(world.prepaid, IDENT)
    Device.objects.filter(pk=creds.device.pk).update(protocol=Protocol.SHELLY)
    return creds


@database_sync_to_async
def _device(pk):
    return Device.objects.get(pk=pk)


async def _converged(pk, state, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        d = await _device(pk)
        if d.reported_relay == state and d.desired_relay == state and d.relay_converged:
            return d
        await asyncio.sleep(0.05)
    raise AssertionError(f"{d.reported_relay}/{d.desired_relay} gen {d.reported_generation}")


def _comm(ident: str, secret: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/shelly/{ident}/{secret}")


async def test_replayed_shelly_session_reads_cuts_and_restores(tpersonas):
    world = tpersonas.a
    creds = await _shelly_device(world)
    comm = _comm(IDENT, creds.secret)
    assert (await comm.connect())[0]
    dev = FakeShelly(comm)
    ts = time.time() - 120
    # given: the Shelly announces itself with its full status, relay on, 1000 Wh
    await dev.send(full_status(True, 1000.0, ts))
    # then: no credit, so the server switches it off and verifies
    await dev.serve_until(output=False)
    assert [r["method"] for r in dev.requests][-2:] == ["Switch.Set", "Switch.GetStatus"]
    assert dev.requests[-2]["params"] == {"id": 0, "on": False}
    device = await _converged(creds.device.pk, "off")
    assert device.connected
    # The energy counter is the register.
    dev.total = 1500.7
    await dev.send(notify_status(ts + 60, aenergy={"total": 1500.7, "minute_ts": int(ts + 60)}))
    # A button press against the desired state is undone with a newer command.
    await dev.send(notify_status(ts + 61, output=True, source="button"))
    dev.output = True
    await dev.serve_until(output=False)
    await _converged(creds.device.pk, "off")
    # when: the tenant tops up, then the next energy notification re-evaluates
    await database_sync_to_async(_set_balance)(world.prepaid_tenancy, 1000)
    await dev.send(notify_status(ts + 90, aenergy={"total": 1500.9, "minute_ts": int(ts + 90)}))
    await dev.serve_until(output=True)
    await _converged(creds.device.pk, "on")
    registers = await database_sync_to_async(
        lambda: list(
            Reading.objects.filter(device_id=creds.device.pk)
            .order_by("seq")
            .values_list("register_wh", flat=True)
        )
    )()
    assert registers == [1000, 1500, 1500]
    await comm.disconnect()
    assert not (await _device(creds.device.pk)).connected


async def test_shelly_with_a_wrong_secret_or_as_another_device_is_refused(tpersonas):
    world = tpersonas.a
    creds = await _shelly_device(world)
    bad = _comm(IDENT, "not-the-secret")
    assert (await bad.connect())[0]
    closed = await bad.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4401
    # A native device's credentials do not open the Shelly endpoint.
    native = _comm(world.prepaid_device.device.ident, world.prepaid_device.secret)
    assert (await native.connect())[0]
    assert (await native.receive_output(timeout=5))["code"] == 4401
    # Frames claiming another source close the socket.
    comm = _comm(IDENT, creds.secret)
    assert (await comm.connect())[0]
    spoof = json.loads(full_status(True, 5.0, time.time()))
    spoof["src"] = "shellyplus1pm-000000000000"
    await comm.send_to(text_data=json.dumps(spoof))
    for _ in range(100):
        out = await comm.receive_output(timeout=5)
        if out["type"] == "websocket.close":
            break
    assert out["code"] == 4401
    count = await database_sync_to_async(Reading.objects.filter(device_id=creds.device.pk).count)()
    assert count == 0


async def _registers(device_id: int) -> list[int]:
    return await database_sync_to_async(
        lambda: list(
            Reading.objects.filter(device_id=device_id)
            .order_by("seq")
            .values_list("register_wh", flat=True)
        )
    )()


def _energy_frame(ts: float | str, total: str) -> str:
    # Written out by hand: json.dumps cannot produce a literal like 1e400.
    return (
        f'{{"src": "{IDENT}", "dst": "submeter", "method": "NotifyStatus", "params": '
        f'{{"ts": {ts}, "switch:0": {{"id": 0, "aenergy": {{"total": {total}}}}}}}}}'
    )


@pytest.mark.parametrize(
    "frame",
    [
        _energy_frame(time.time() - 60, "1e400"),
        _energy_frame(time.time() - 60, "NaN"),
        _energy_frame(time.time() - 60, "1e300"),
        _energy_frame(time.time() - 60, "9223372036854775808"),
        _energy_frame(time.time() - 60, "-5"),
        _energy_frame("1" + "0" * 400, "-5"),  # ts: an integer beyond any double
        '{"src": "'
        + IDENT
        + '", "method": "NotifyStatus", "params": '
        + "[" * 100_000
        + "]" * 100_000
        + "}",
        '{"src": "' + IDENT + '", "method": "NotifyEvent", "params": ' + "[" * 40 + "]" * 40 + "}",
    ],
    ids=[
        "total-1e400",
        "total-nan",
        "total-1e300",
        "total-2^63",
        "total-negative",
        "ts-10^400",
        "nested-100000",
        "nested-40",
    ],
)
async def test_shelly_bad_input_is_ignored_and_the_socket_takes_the_next_reading(tpersonas, frame):
    creds = await _shelly_device(tpersonas.a)
    comm = _comm(IDENT, creds.secret)
    assert (await comm.connect())[0]
    await comm.send_to(text_data=frame)
    # Nothing of it is stored, and the socket still serves: the next energy
    # report becomes the only reading.
    await comm.send_to(text_data=notify_status(time.time() - 30, aenergy={"total": 1234.5}))
    for _ in range(200):
        if await _registers(creds.device.pk):
            break
        await asyncio.sleep(0.05)
    assert await _registers(creds.device.pk) == [1234]
    await comm.disconnect()


async def test_a_shelly_whose_clock_is_not_set_reads_at_the_servers_time(tpersonas):
    from django.utils import timezone

    creds = await _shelly_device(tpersonas.a)
    comm = _comm(IDENT, creds.secret)
    assert (await comm.connect())[0]
    before = timezone.now()
    await comm.send_to(text_data=notify_status(0, aenergy={"total": 42.0}))
    for _ in range(200):
        if await _registers(creds.device.pk):
            break
        await asyncio.sleep(0.05)
    reading = await database_sync_to_async(Reading.objects.get)(device_id=creds.device.pk)
    assert reading.register_wh == 42 and reading.taken_at >= before
    await comm.disconnect()


def test_switch_status_and_reading_time_parse_documented_shapes():
    from datetime import UTC, datetime, timedelta

    status = switch_status(_switch(True, 11.679, 1654511972), 1654511972.5)
    assert status is not None and status.output is True and status.energy_wh == 11.679
    partial = switch_status({"id": 0, "source": "button", "output": False})
    assert partial is not None and partial.energy_wh is None
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert reading_time(None, now, 300) == now
    future = (now + timedelta(hours=2)).timestamp()
    assert reading_time(future, now, 300) == now  # a device clock ahead is not trusted
    assert reading_time(now.timestamp() - 10, now, 300) == now - timedelta(seconds=10)
    # A clock that is not set (or reset to an epoch) is not trusted either.
    oldest = datetime(2000, 1, 1, tzinfo=UTC)
    assert reading_time(0, now, 300, oldest) == now
    assert reading_time(946684799, now, 300, oldest) == now  # 1999-12-31T23:59:59Z
    assert reading_time(946684800, now, 300, oldest) == oldest
    assert reading_time(1e300, now, 300, oldest) == now
    assert reading_time(float("nan"), now, 300, oldest) == now
    assert switch_status({"aenergy": {"total": float("inf")}}) == switch_status({})
