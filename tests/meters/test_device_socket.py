"""The device socket through WebsocketCommunicator, as a device would use it."""

from __future__ import annotations

import base64
import json

import pytest
from channels.db import database_sync_to_async

from meters.models import Device, Reading
from payments.ledger import tenant_account
from tests.wsutil import FakeDevice, device_communicator, iso

pytestmark = pytest.mark.django_db(transaction=True)


async def _connect(creds):
    comm = device_communicator(creds.headers)
    connected, _ = await comm.connect()
    assert connected
    return FakeDevice(comm)


@database_sync_to_async
def _count_readings(device_id=None):
    qs = Reading.objects.all()
    if device_id is not None:
        qs = qs.filter(device_id=device_id)
    return qs.count()


@database_sync_to_async
def _quality(device_id, seq):
    return Reading.objects.get(device_id=device_id, seq=seq).quality


@database_sync_to_async
def _balance(tenancy):
    return tenant_account(tenancy=tenancy).balance_minor


@database_sync_to_async
def _credit(tenancy, amount):
    from payments.ledger import Leg, landlord_account, ledger_post
    from payments.models import Account

    tenant = tenant_account(tenancy=tenancy)
    clearing = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.CLEARING, currency="GBP"
    )
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind="adjustment",
        idempotency_key=f"test-credit-{tenancy.pk}-{amount}",
        legs=[Leg(debit=clearing, credit=tenant, amount_minor=amount)],
    )


async def _assert_refused(comm, code=4401):
    connected, _ = await comm.connect()
    assert connected  # accepted only to be closed with a code the device can read
    closed = await comm.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == code, closed
    assert closed.get("reason")


async def test_wrong_subprotocol_is_refused(tpersonas):
    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    comm = WebsocketCommunicator(
        application,
        "/ws/device/v1",
        headers=tpersonas.a.prepaid_device.headers,
        subprotocols=["ocpp1.6"],
    )
    await _assert_refused(comm, code=4400)


def _basic(ident: str, secret: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Basic " + base64.b64encode(f"{ident}:{secret}".encode()))]


@pytest.mark.parametrize(
    "headers",
    [
        [],
        _basic("dev-a-pre", "wrong-secret"),
        _basic("no-such-device", "whatever"),
        [(b"authorization", b"Bearer abc")],
        [(b"authorization", b"Basic !!!notbase64")],
        [(b"authorization", b"Basic " + base64.b64encode(b"no-colon"))],
    ],
    ids=["missing", "wrong-secret", "unknown-device", "wrong-scheme", "bad-base64", "no-colon"],
)
async def test_wrong_or_missing_credentials_are_refused(tpersonas, headers):
    await _assert_refused(device_communicator(headers))


async def test_secret_of_one_device_cannot_open_another(tpersonas):
    a, b = tpersonas.a.prepaid_device, tpersonas.b.prepaid_device
    await _assert_refused(device_communicator(_basic(b.device.ident, a.secret)))


async def test_boot_heartbeat_and_readings(tpersonas):
    dev = await _connect(tpersonas.a.prepaid_device)
    boot = await dev.boot()
    assert boot[0] == 3 and boot[2]["status"] == "Accepted" and boot[2]["protocol"] == "1"
    hb = await dev.call("Heartbeat", {})
    assert hb[0] == 3 and "server_time" in hb[2]
    res = await dev.readings((1, 100), (2, 150), (3, 180))
    assert res[2] == {"accepted": 3, "duplicates": []}
    assert await _count_readings(tpersonas.a.prepaid_device.device.pk) == 3
    await dev.comm.disconnect()


async def test_readings_land_only_on_the_authenticated_devices_meter(tpersonas):
    dev = await _connect(tpersonas.a.prepaid_device)
    other = tpersonas.b.prepaid_device.device
    # A payload naming another device is ignored: identity comes from the credential.
    res = await dev.call(
        "MeterValues",
        {
            "device": other.ident,
            "readings": [{"seq": 1, "taken_at": iso(hours=-1), "register_wh": 5}],
        },
    )
    assert res[0] == 3
    assert await _count_readings(other.pk) == 0
    assert await _count_readings(tpersonas.a.prepaid_device.device.pk) == 1
    await dev.comm.disconnect()


async def test_duplicate_and_replayed_readings_change_nothing(tpersonas):
    world = tpersonas.a
    await _credit(world.prepaid_tenancy, 10_000)
    dev = await _connect(world.prepaid_device)
    await dev.readings((1, 1000), (2, 2000))
    after_first = await _balance(world.prepaid_tenancy)
    assert after_first == 10_000 - 30  # 1 kWh at 30p
    replay = await dev.readings((1, 1000), (2, 2000))
    assert replay[2] == {"accepted": 0, "duplicates": [1, 2]}
    within = await dev.readings((3, 3000), (3, 3000))
    assert within[2]["duplicates"] == [3]
    assert await _balance(world.prepaid_tenancy) == after_first - 30
    assert await _count_readings() == 3
    await dev.comm.disconnect()


async def test_negative_delta_is_flagged_and_never_billed(tpersonas):
    world = tpersonas.a
    await _credit(world.prepaid_tenancy, 10_000)
    dev = await _connect(world.prepaid_device)
    await dev.readings((1, 5000), (2, 6000))
    before = await _balance(world.prepaid_tenancy)
    res = await dev.readings((3, 4000))
    assert res[2] == {"accepted": 1, "duplicates": []}
    assert await _quality(world.prepaid_device.device.pk, 3) == Reading.Quality.FLAGGED
    assert await _balance(world.prepaid_tenancy) == before
    await dev.comm.disconnect()


async def test_implausible_jump_is_flagged_not_billed(tpersonas):
    world = tpersonas.a
    await _credit(world.prepaid_tenancy, 10_000)
    dev = await _connect(world.prepaid_device)
    await dev.readings((1, 0))
    res = await dev.readings((2, 5_000_000))  # 5 MWh in a minute
    assert res[2] == {"accepted": 1, "duplicates": []}
    assert await _quality(world.prepaid_device.device.pk, 2) == Reading.Quality.FLAGGED
    assert await _balance(world.prepaid_tenancy) == 10_000
    await dev.comm.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "FormatViolation"),
        ("{}", "FormatViolation"),
        ("[2]", "FormatViolation"),
        ('[9, "x", "Heartbeat", {}]', "FormatViolation"),
        ('[2, 5, "Heartbeat", {}]', "FormatViolation"),
        ('[2, "x", "Heartbeat", []]', "FormatViolation"),
        ('[2, "x", "Explode", {}]', "NotImplemented"),
        ('[2, "x", "MeterValues", {"readings": "no"}]', "FormatViolation"),
        ('[2, "x", "MeterValues", {"readings": []}]', "FormatViolation"),
        (
            '[2, "x", "MeterValues", {"readings": [{"seq": "1", "taken_at": "2026-01-01T00:00:00Z", "register_wh": 1}]}]',
            "TypeConstraintViolation",
        ),
        (
            '[2, "x", "MeterValues", {"readings": [{"seq": 1, "taken_at": "yesterday", "register_wh": 1}]}]',
            "FormatViolation",
        ),
        (
            '[2, "x", "MeterValues", {"readings": [{"seq": 1, "taken_at": "2026-01-01T00:00:00", "register_wh": 1}]}]',
            "FormatViolation",
        ),
        (
            '[2, "x", "MeterValues", {"readings": [{"seq": 1, "taken_at": "2026-01-01T00:00:00Z", "register_wh": -1}]}]',
            "PropertyConstraintViolation",
        ),
        (
            '[2, "x", "MeterValues", {"readings": [{"seq": 1, "taken_at": "2026-01-01T00:00:00Z", "register_wh": 100000000000000000}]}]',
            "PropertyConstraintViolation",
        ),
        (
            '[2, "x", "MeterValues", {"readings": [{"seq": -3, "taken_at": "2026-01-01T00:00:00Z", "register_wh": 1}]}]',
            "PropertyConstraintViolation",
        ),
        (
            '[2, "x", "MeterValues", {"readings": [{"seq": 1, "taken_at": "2099-01-01T00:00:00Z", "register_wh": 1}]}]',
            "PropertyConstraintViolation",
        ),
        (
            '[2, "x", "RelayStatus", {"state": "maybe", "generation": 1}]',
            "PropertyConstraintViolation",
        ),
        ('[2, "x", "BootNotification", {"protocol_versions": ["7"]}]', "NotSupported"),
    ],
)
async def test_bad_frames_get_a_clear_error_store_nothing_and_keep_the_socket(
    tpersonas, frame, code
):
    dev = await _connect(tpersonas.a.prepaid_device)
    await dev.send_raw(frame)
    reply = json.loads(await dev.comm.receive_from(timeout=5))
    assert reply[0] == 4 and reply[2] == code, reply
    assert await _count_readings() == 0
    # The socket still serves.
    hb = await dev.call("Heartbeat", {})
    assert hb[0] == 3
    await dev.comm.disconnect()


async def test_a_bad_reading_rejects_the_whole_frame(tpersonas):
    dev = await _connect(tpersonas.a.prepaid_device)
    res = await dev.call(
        "MeterValues",
        {
            "readings": [
                {"seq": 1, "taken_at": iso(hours=-1), "register_wh": 10},
                {"seq": 2, "taken_at": iso(minutes=-59), "register_wh": -10},
            ]
        },
    )
    assert res[0] == 4 and res[4] == {"seq": 2}
    assert await _count_readings() == 0
    await dev.comm.disconnect()


def _values(taken_at: str, register_wh: object = 100, seq: object = 1) -> str:
    reading = f'{{"seq": {seq}, "taken_at": "{taken_at}", "register_wh": {register_wh}}}'
    return f'[2, "x", "MeterValues", {{"readings": [{reading}]}}]'


_NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("frame", "code", "details"),
    [
        # A time whose conversion to UTC overflows.
        (_values("0001-01-01T00:00+14:00"), "PropertyConstraintViolation", {"seq": 1}),
        (_values("9999-12-31T23:59:59-14:00"), "PropertyConstraintViolation", {"seq": 1}),
        # Before any real reading, or older than READING_MAX_AGE_DAYS.
        (_values("1999-12-31T23:59:59Z"), "PropertyConstraintViolation", {"seq": 1}),
        (_values(iso(days=-3651)), "PropertyConstraintViolation", {"seq": 1}),
        # Beyond the database's BIGINT.
        (_values(iso(hours=-1), register_wh=2**63), "PropertyConstraintViolation", {"seq": 1}),
        (_values(iso(hours=-1), seq=2**63), "PropertyConstraintViolation", {"seq": 2**63}),
        (
            '[2, "x", "RelayStatus", {"state": "on", "generation": 9223372036854775808}]',
            "PropertyConstraintViolation",
            {},
        ),
        (
            '[2, "x", "RelayStatus", {"state": "on", "generation": 4611686018427387905}]',
            "PropertyConstraintViolation",
            {},
        ),
        (
            '[2, "x", "BootNotification", {"relay": {"state": "on", "generation": 1e400}}]',
            "FormatViolation",
            {},
        ),
        # Numbers JSON cannot hold as they are.
        (_values(iso(hours=-1), register_wh="1e400"), "FormatViolation", {}),
        (_values(iso(hours=-1), register_wh="NaN"), "FormatViolation", {}),
        (_values(iso(hours=-1), register_wh="-Infinity"), "FormatViolation", {}),
        # Nesting: deep enough to exhaust the parser, and merely absurd.
        (f'[2, "x", "Heartbeat", {{"a": {_NESTED}}}]', "FormatViolation", {}),
        (
            '[2, "x", "BootNotification", {"firmware": ' + "[" * 40 + "]" * 40 + "}]",
            "FormatViolation",
            {},
        ),
    ],
    ids=[
        "taken_at-year-1",
        "taken_at-year-9999",
        "taken_at-before-2000",
        "taken_at-too-old",
        "register-2^63",
        "seq-2^63",
        "generation-2^63",
        "generation-above-2^62",
        "generation-1e400",
        "register-1e400",
        "register-nan",
        "register-infinity",
        "nested-100000",
        "nested-40",
    ],
)
async def test_out_of_range_input_is_refused_and_the_socket_takes_the_next_reading(
    tpersonas, frame, code, details
):
    creds = tpersonas.a.prepaid_device
    dev = await _connect(creds)
    await dev.send_raw(frame)
    reply = json.loads(await dev.comm.receive_from(timeout=5))
    assert reply[0] == 4 and reply[2] == code and reply[4] == details, reply
    assert await _count_readings() == 0
    device = await database_sync_to_async(Device.objects.get)(pk=creds.device.pk)
    assert device.reported_generation == 0
    # The socket still serves the next, good reading.
    res = await dev.readings((5, 1000))
    assert res[:3] == [3, res[1], {"accepted": 1, "duplicates": []}]
    assert await _count_readings() == 1
    await dev.comm.disconnect()


async def test_binary_frames_are_refused(tpersonas):
    dev = await _connect(tpersonas.a.prepaid_device)
    await dev.comm.send_to(bytes_data=b"\x00\x01")
    reply = json.loads(await dev.comm.receive_from(timeout=5))
    assert reply[0] == 4 and reply[2] == "FormatViolation"
    await dev.comm.disconnect()


async def test_connect_marks_device_online_and_disconnect_offline(tpersonas):
    creds = tpersonas.a.prepaid_device
    dev = await _connect(creds)
    await dev.boot()
    device = await database_sync_to_async(Device.objects.get)(pk=creds.device.pk)
    assert device.connected and device.firmware == "test"
    await dev.comm.disconnect()
    device = await database_sync_to_async(Device.objects.get)(pk=creds.device.pk)
    assert not device.connected


async def test_a_second_connection_replaces_the_first(tpersonas):
    creds = tpersonas.a.prepaid_device
    first = await _connect(creds)
    second = await _connect(creds)
    out = await first.comm.receive_output(timeout=5)
    assert out == {"type": "websocket.close", "code": 4409}
    hb = await second.call("Heartbeat", {})
    assert hb[0] == 3
    device = await database_sync_to_async(Device.objects.get)(pk=creds.device.pk)
    assert device.connected
    await second.comm.disconnect()


async def test_device_secret_command_sets_a_working_secret(tpersonas):
    import io

    from django.core.management import call_command

    ident = tpersonas.a.prepaid_device.device.ident
    # a socket open with the old secret is closed by the command
    old = device_communicator(tpersonas.a.prepaid_device.headers)
    connected, _ = await old.connect()
    assert connected
    out = io.StringIO()
    await database_sync_to_async(call_command)(
        "device_secret", ident, stdout=out, stderr=io.StringIO()
    )
    secret = out.getvalue().split("secret: ")[1].strip()
    closed = await old.receive_output(timeout=5)
    while closed["type"] != "websocket.close":
        closed = await old.receive_output(timeout=5)
    assert closed["code"] == 4401
    comm = device_communicator(_basic(ident, secret))
    connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()
    await _assert_refused(device_communicator(tpersonas.a.prepaid_device.headers))


async def test_repeated_bad_credentials_from_one_address_are_slowed_down(tpersonas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "DEVICE_AUTH_MAX_FAILURES": 3}
    for _ in range(3):
        await _assert_refused(device_communicator(_basic("dev-a-pre", "guess")))
    # Now even the right secret from that address waits out the window, with a reason.
    await _assert_refused(device_communicator(tpersonas.a.prepaid_device.headers), code=4429)


async def test_one_meters_failures_do_not_lock_out_its_neighbours_behind_one_address(
    tpersonas, settings
):
    # The meters of a building often reach the server from one public address.
    settings.SUBMETER = {**settings.SUBMETER, "DEVICE_AUTH_MAX_FAILURES": 3}
    for _ in range(3):
        await _assert_refused(device_communicator(_basic("dev-a-pre", "stale-secret")))
    await _assert_refused(device_communicator(tpersonas.a.prepaid_device.headers), code=4429)
    neighbour = await _connect(tpersonas.a.postpaid_device)
    assert (await neighbour.boot())[2]["status"] == "Accepted"
    await neighbour.comm.disconnect()


async def test_calls_off_the_database_thread_give_their_connection_back(tpersonas):
    """Device logins and reading batches run in a loop's thread pool; a connection
    kept by such a thread would stay checked out of the PostgreSQL pool for
    good. Channels' own clean-up is off while its test communicator runs, as
    it is here."""
    from unittest import mock

    from django.db import connections

    from config.db import off_thread

    used = []

    def work() -> int:
        used.append(connections["default"])
        return Device.objects.count()

    with mock.patch("channels.db.close_old_connections", lambda: None):
        assert await off_thread(work)() == 4
    assert used[0].connection is None
