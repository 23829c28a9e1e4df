"""Protections: every one blocks an automatic cut-off, none ever blocks reconnection."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.core import mail
from hypothesis import given
from hypothesis import strategies as st

from landlord.models import AuditEvent, Unit
from meters.models import Alert, CutoffNotice, Device, RelayCommand
from payments.ledger import Leg, landlord_account, ledger_post, tenant_account
from payments.models import Account
from supply import protections as prot
from supply.decision import desired_supply, supply_evaluate, supply_reconcile
from supply.overrides import OverrideRefused, supply_override_release, supply_override_set
from supply.protections import Protections

LONDON = zoneinfo.ZoneInfo("Europe/London")


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


# --- Pure rules (hypothesis) ------------------------------------------------

aware = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
protections_st = st.builds(
    Protections,
    tz=st.sampled_from(["Europe/London", "America/New_York", "Australia/Sydney", "UTC"]),
    days=st.sets(st.sampled_from("1234567"), min_size=0, max_size=7).map(
        lambda s: "".join(sorted(s))
    ),
    start=st.times(),
    end=st.times(),
    holidays=st.frozensets(st.dates(date(2024, 1, 1), date(2030, 12, 31)), max_size=5),
    notice=st.timedeltas(timedelta(0), timedelta(days=5)),
    landlord_may_disconnect=st.booleans(),
    vulnerable=st.booleans(),
    freeze_reason=st.sampled_from(["", "dispute #12 open"]),
)
modes = st.sampled_from([Unit.BillingMode.PREPAID, Unit.BillingMode.POSTPAID])
balances = st.one_of(st.none(), st.integers(-(10**7), 10**7))
overrides = st.sampled_from(["", "on", "off"])


@given(p=protections_st, mode=modes, now=aware, noticed=st.one_of(st.none(), aware))
def test_property_reconnection_is_never_delayed(p, mode, now, noticed):
    # Credit above zero (or postpaid): the supply is on, whatever the protections say.
    for balance in (1, 10**6):
        state, _ = desired_supply(
            billing_mode=mode, balance_minor=balance, protections=p, noticed_at=noticed, now=now
        )
        assert state == "on"


@given(
    p=protections_st,
    blocker=st.sampled_from(["law", "vulnerable", "dispute"]),
    balance=st.integers(-(10**7), 0),
    now=aware,
    noticed=st.one_of(st.none(), aware),
)
def test_property_every_blocking_protection_keeps_the_supply_on(p, blocker, balance, now, noticed):
    if blocker == "law":
        p = Protections(**{**p.__dict__, "landlord_may_disconnect": False})
    elif blocker == "vulnerable":
        p = Protections(**{**p.__dict__, "vulnerable": True})
    else:
        p = Protections(**{**p.__dict__, "freeze_reason": "dispute #7 open"})
    state, reason = desired_supply(
        billing_mode=Unit.BillingMode.PREPAID,
        balance_minor=balance,
        protections=p,
        noticed_at=noticed,
        now=now,
    )
    assert state == "on"
    assert reason.startswith("protected")


@given(
    p=protections_st, mode=modes, balance=balances, now=aware, noticed=st.one_of(st.none(), aware)
)
def test_property_an_automatic_cut_needs_notice_and_the_window(p, mode, balance, now, noticed):
    state, _ = desired_supply(
        billing_mode=mode, balance_minor=balance, protections=p, noticed_at=noticed, now=now
    )
    if state == "off":
        assert mode == Unit.BillingMode.PREPAID and balance is not None and balance <= 0
        assert not p.blocking_reason()
        assert noticed is not None and now >= noticed + p.notice
        assert prot.in_window(p, now)
        # Protections only ever keep a supply on: without them it would be off too.
        assert desired_supply(billing_mode=mode, balance_minor=balance)[0] == "off"


@given(p=protections_st, mode=modes, balance=balances, now=aware, override=overrides)
def test_property_manual_override_wins_except_off_where_forbidden(p, mode, balance, now, override):
    state, _ = desired_supply(
        billing_mode=mode, balance_minor=balance, protections=p, now=now, override=override
    )
    if override == "on":
        assert state == "on"
    elif override == "off":
        assert state == ("off" if p.landlord_may_disconnect else "on")


@given(p=protections_st, after=aware)
def test_property_next_window_start_is_inside_the_window_and_not_earlier(p, after):
    start = prot.next_window_start(p, after, horizon_days=30)
    if start is not None:
        assert start >= after
        assert prot.in_window(p, start)


def test_default_window_is_working_days_nine_to_three_london():
    p = Protections()
    assert prot.in_window(p, local(2026, 11, 24, 9, 0))  # Tuesday
    assert prot.in_window(p, local(2026, 11, 24, 14, 59))
    assert not prot.in_window(p, local(2026, 11, 24, 15, 0))
    assert not prot.in_window(p, local(2026, 11, 24, 8, 59))
    assert not prot.in_window(p, local(2026, 11, 28, 11, 0))  # Saturday
    assert p.notice == timedelta(hours=24)


def test_notice_on_friday_afternoon_lands_on_monday_morning_and_skips_a_holiday():
    p = Protections(holidays=frozenset({date(2026, 11, 30)}))  # Monday a holiday
    assert prot.earliest_cutoff(p, local(2026, 11, 27, 14, 0)) == local(2026, 12, 1, 9, 0)


def test_dst_spring_forward_window_opening_exists():
    p = Protections(days="7", start=time(1, 30), end=time(4, 0))  # 01:30 does not exist
    start = prot.next_window_start(p, local(2026, 3, 28, 12, 0))
    assert start is not None and prot.in_window(p, start)
    assert start.astimezone(LONDON).date() == date(2026, 3, 29)


# --- Through the database -------------------------------------------------------


def _set_balance(tenancy, target: int) -> None:
    account = tenant_account(tenancy=tenancy)
    delta = target - account.balance_minor
    if not delta:
        return
    clearing = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.CLEARING, currency="GBP"
    )
    legs = (
        [Leg(debit=clearing, credit=account, amount_minor=delta)]
        if delta > 0
        else [Leg(debit=account, credit=clearing, amount_minor=-delta)]
    )
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind="adjustment",
        idempotency_key=f"test-balance-{tenancy.pk}-{account.balance_minor}-{target}",
        legs=legs,
    )


def _protect(world, **fields):
    prop = world.prop
    defaults = {
        "cutoff_days": "12345",
        "cutoff_start": time(9, 0),
        "cutoff_end": time(15, 0),
        "cutoff_notice_minutes": 24 * 60,
    }
    for k, v in {**defaults, **fields}.items():
        setattr(prop, k, v)
    prop.save()


def _device(world) -> Device:
    return Device.objects.get(pk=world.prepaid_device.device.pk)


@pytest.mark.django_db
def test_cut_off_waits_for_notice_and_window_then_happens_without_a_reading(personas):
    world = personas.a
    _protect(world)
    tuesday = local(2026, 11, 24, 10, 0)
    _set_balance(world.prepaid_tenancy, -5)
    supply_evaluate(unit=world.prepaid, reason="test", now=tuesday)
    notice = CutoffNotice.objects.get(tenancy=world.prepaid_tenancy)
    assert notice.earliest_at == local(2026, 11, 25, 10, 0)
    assert _device(world).desired_relay == "on"
    assert "scheduled" in _device(world).desired_reason
    warning = Alert.objects.get(kind=Alert.Kind.CUTOFF_WARNING)
    assert "off Wed 10:00 unless £1.00 is added" in warning.message
    # Not yet due: the periodic reconciliation leaves it on.
    supply_reconcile(now=local(2026, 11, 25, 9, 59))
    assert _device(world).desired_relay == "on"
    # Due: the reconciliation alone (no new reading) cuts it.
    supply_reconcile(now=local(2026, 11, 25, 10, 0))
    device = _device(world)
    assert device.desired_relay == "off"
    assert RelayCommand.objects.filter(device=device, state="off").count() == 1
    assert CutoffNotice.objects.get(pk=notice.pk).cut_at is not None


@pytest.mark.django_db
def test_top_up_cancels_the_scheduled_cut_off(personas):
    world = personas.a
    _protect(world)
    _set_balance(world.prepaid_tenancy, 0)
    supply_evaluate(unit=world.prepaid, reason="test", now=local(2026, 11, 24, 10, 0))
    _set_balance(world.prepaid_tenancy, 1)
    supply_evaluate(unit=world.prepaid, reason="payment received", now=local(2026, 11, 24, 11))
    notice = CutoffNotice.objects.get(tenancy=world.prepaid_tenancy)
    assert notice.status == CutoffNotice.Status.CANCELLED
    supply_reconcile(now=local(2026, 11, 26, 10, 0))
    assert _device(world).desired_relay == "on"
    assert not RelayCommand.objects.filter(device=_device(world), state="off").exists()


@pytest.mark.django_db
def test_reconnection_after_top_up_is_immediate_even_outside_the_window(personas):
    world = personas.a
    _protect(world, cutoff_notice_minutes=0)
    _set_balance(world.prepaid_tenancy, -100)
    supply_evaluate(unit=world.prepaid, reason="test", now=local(2026, 11, 24, 10, 0))
    assert _device(world).desired_relay == "off"
    _set_balance(world.prepaid_tenancy, 500)
    saturday_night = local(2026, 11, 28, 23, 30)
    supply_evaluate(unit=world.prepaid, reason="payment received", now=saturday_night)
    assert _device(world).desired_relay == "on"


@pytest.mark.django_db
def test_outside_the_window_nothing_is_cut(personas):
    world = personas.a
    _protect(world, cutoff_notice_minutes=0)
    _set_balance(world.prepaid_tenancy, -100)
    supply_evaluate(unit=world.prepaid, reason="test", now=local(2026, 11, 28, 11, 0))  # Saturday
    assert _device(world).desired_relay == "on"
    supply_reconcile(now=local(2026, 11, 30, 9, 0))  # Monday opening
    assert _device(world).desired_relay == "off"


@pytest.mark.django_db
def test_holiday_blocks_the_cut_off(personas):
    world = personas.a
    _protect(world, cutoff_notice_minutes=0, cutoff_holidays=["2026-12-25"])
    _set_balance(world.prepaid_tenancy, -100)
    supply_evaluate(unit=world.prepaid, reason="test", now=local(2026, 12, 25, 10, 0))
    assert _device(world).desired_relay == "on"


@pytest.mark.django_db
def test_vulnerable_household_is_never_cut_automatically(personas):
    world = personas.a
    _protect(world, cutoff_notice_minutes=0)
    world.prepaid_tenancy.vulnerable = True
    world.prepaid_tenancy.save()
    _set_balance(world.prepaid_tenancy, -100)
    supply_evaluate(unit=world.prepaid, reason="test", now=local(2026, 11, 24, 10, 0))
    device = _device(world)
    assert device.desired_relay == "on" and "vulnerable" in device.desired_reason
    assert not CutoffNotice.objects.exists()


def freeze_for_test(*, tenancy):
    return "dispute #1 open" if tenancy.unit.name == "Prepaid flat" else ""


@pytest.mark.django_db
def test_dispute_freeze_hook_blocks_the_cut_off(personas, settings):
    settings.SUBMETER = {
        **settings.SUBMETER,
        "DISCONNECTION_FREEZE_HOOKS": ["tests.meters.test_protections.freeze_for_test"],
    }
    world = personas.a
    _protect(world, cutoff_notice_minutes=0)
    _set_balance(world.prepaid_tenancy, -100)
    supply_evaluate(unit=world.prepaid, reason="test", now=local(2026, 11, 24, 10, 0))
    device = _device(world)
    assert device.desired_relay == "on" and "dispute #1 open" in device.desired_reason


@pytest.mark.django_db
def test_no_landlord_disconnection_blocks_automatic_and_manual_cuts(personas):
    world = personas.a
    _protect(world, cutoff_notice_minutes=0, landlord_may_disconnect=False)
    _set_balance(world.prepaid_tenancy, -100)
    supply_evaluate(unit=world.prepaid, reason="test", now=local(2026, 11, 24, 10, 0))
    assert _device(world).desired_relay == "on"
    with pytest.raises(OverrideRefused):
        supply_override_set(
            unit=world.prepaid, state="off", reason="arrears", actor_id=world.staff.pk
        )
    assert _device(world).desired_relay == "on"


@pytest.mark.django_db
def test_manual_override_is_audited_and_released(personas):
    world = personas.a
    _set_balance(world.prepaid_tenancy, 1000)
    supply_override_set(
        unit=world.prepaid, state="off", reason="electrical fault reported", actor_id=world.staff.pk
    )
    device = _device(world)
    assert device.desired_relay == "off" and device.desired_reason.startswith("manual override")
    event = AuditEvent.objects.get(action="supply.override.off")
    assert event.actor_id == world.staff.pk and event.reason == "electrical fault reported"
    supply_override_release(unit=world.prepaid, actor_id=world.staff.pk)
    assert _device(world).desired_relay == "on"
    assert AuditEvent.objects.filter(action="supply.override.release").count() == 1
    with pytest.raises(OverrideRefused):
        supply_override_set(unit=world.prepaid, state="off", reason="  ", actor_id=world.staff.pk)


@pytest.mark.django_db
def test_landlord_page_override_and_release(client, personas):
    world = personas.a
    client.force_login(world.staff)
    url = f"/landlord/units/{world.prepaid.pk}/override/"
    missing = client.post(url, {"state": "off", "reason": ""})
    assert missing.status_code == 400 and b"Give a reason" in missing.content
    assert client.post(url, {"state": "off", "reason": "fault"}).status_code == 302
    page = client.get(f"/landlord/units/{world.prepaid.pk}/")
    assert b"supply forced <strong>off</strong>" in page.content
    details = client.get(f"/landlord/units/{world.prepaid.pk}/", {"tab": "details"})
    assert b"supply.override.off" in details.content
    released = client.post(f"/landlord/units/{world.prepaid.pk}/override/release/", {})
    assert released.status_code == 302
    assert Unit.objects.get(pk=world.prepaid.pk).override_state == ""


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["landlord_b", "tenant_a", "anonymous"])
def test_override_of_another_landlords_unit_is_404(client, personas, who):
    world = personas.a
    if who == "landlord_b":
        client.force_login(personas.b.staff)
    elif who == "tenant_a":
        client.force_login(world.prepaid_tenant)
    url = f"/landlord/units/{world.prepaid.pk}/override/"
    response = client.post(url, {"state": "off", "reason": "x"})
    assert response.status_code in (404, 302)  # anonymous is sent to log in
    if who != "anonymous":
        assert response.status_code == 404
    assert Unit.objects.get(pk=world.prepaid.pk).override_state == ""


@pytest.mark.django_db
def test_tenant_sees_the_scheduled_cut_off_and_a_top_up_removes_it(
    client, personas, django_capture_on_commit_callbacks
):
    world = personas.a
    world.prepaid_tenant.email = "t1@example.com"
    world.prepaid_tenant.save()
    _protect(world, cutoff_days="1234567", cutoff_start=time(0), cutoff_end=time(0))
    world.prop.cutoff_notice_minutes = 90
    world.prop.save()
    _set_balance(world.prepaid_tenancy, -250)
    from django.utils import timezone

    from supply.alerts import clock

    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        supply_evaluate(unit=world.prepaid, reason="test", now=now)
    client.force_login(world.prepaid_tenant)
    page = client.get(f"/tenant/{world.prepaid_tenancy.pk}/").content.decode()
    expected = f"off {clock(now + timedelta(minutes=90), 'Europe/London')} unless £2.51 is added"
    assert expected in page
    assert [m.to for m in mail.outbox if expected in m.body] == [["t1@example.com"]]
    _set_balance(world.prepaid_tenancy, 300)
    supply_evaluate(unit=world.prepaid, reason="payment received")
    page = client.get(f"/tenant/{world.prepaid_tenancy.pk}/").content.decode()
    assert "unless" not in page


@pytest.mark.django_db
def test_marking_a_household_vulnerable_in_the_admin_restores_supply_at_once(client, personas):
    world = personas.a
    _set_balance(world.prepaid_tenancy, -100)
    supply_evaluate(unit=world.prepaid, reason="test")
    assert _device(world).desired_relay == "off"
    client.force_login(personas.admin)
    tenancy = world.prepaid_tenancy
    url = f"/admin/landlord/tenancy/{tenancy.pk}/change/"
    response = client.post(
        url,
        {
            "landlord": tenancy.landlord_id,
            "unit": tenancy.unit_id,
            "tenant": tenancy.tenant_id,
            "start_date": tenancy.start_date.isoformat(),
            "end_date": "",
            "vulnerable": "on",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert _device(world).desired_relay == "on"


@pytest.mark.django_db
def test_periodic_reconciliation_reconnects_when_a_protection_appears(personas):
    world = personas.a
    _set_balance(world.prepaid_tenancy, -100)
    supply_evaluate(unit=world.prepaid, reason="test")
    assert _device(world).desired_relay == "off"
    world.prop.landlord_may_disconnect = False
    world.prop.save()
    supply_reconcile()
    assert _device(world).desired_relay == "on"


def _hold_on(world, settings, protection: str, held: bool) -> None:
    """Switch one of the protections that forbid an automatic cut-off on or off."""
    if protection == "vulnerable":
        world.prepaid_tenancy.vulnerable = held
        world.prepaid_tenancy.save()
    elif protection == "no_landlord_disconnection":
        world.prop.landlord_may_disconnect = not held
        world.prop.save()
    else:
        hooks = ["tests.meters.test_protections.freeze_for_test"] if held else []
        settings.SUBMETER = {**settings.SUBMETER, "DISCONNECTION_FREEZE_HOOKS": hooks}


@pytest.mark.django_db
@pytest.mark.parametrize("protection", ["vulnerable", "no_landlord_disconnection", "dispute"])
def test_after_a_protection_ends_a_cut_off_needs_a_new_notice_for_the_current_amount(
    personas, settings, protection
):
    world = personas.a
    _protect(world)  # Monday to Friday 09:00-15:00, 24 hours' notice
    # given: a notice on Tuesday for a balance of -£0.05, due Wednesday 10:00
    _set_balance(world.prepaid_tenancy, -5)
    supply_evaluate(unit=world.prepaid, reason="test", now=local(2026, 11, 24, 10, 0))
    first = CutoffNotice.objects.get(tenancy=world.prepaid_tenancy)
    assert first.earliest_at == local(2026, 11, 25, 10, 0)
    # and a protection that holds the supply on from Tuesday 11:00, while the debt grows
    _hold_on(world, settings, protection, True)
    supply_evaluate(unit=world.prepaid, reason="protections changed", now=local(2026, 11, 24, 11))
    _set_balance(world.prepaid_tenancy, -300)
    supply_evaluate(unit=world.prepaid, reason="usage", now=local(2026, 11, 26, 9, 0))
    assert _device(world).desired_relay == "on"
    # when: the protection ends on Thursday 10:00, long after the first notice fell due
    _hold_on(world, settings, protection, False)
    thursday = local(2026, 11, 26, 10, 0)
    supply_evaluate(unit=world.prepaid, reason="protections changed", now=thursday)
    # then: the supply stays on under a new notice with today's amount and the full period
    assert _device(world).desired_relay == "on"
    assert CutoffNotice.objects.get(pk=first.pk).status == CutoffNotice.Status.CANCELLED
    notice = CutoffNotice.objects.get(status=CutoffNotice.Status.SCHEDULED)
    assert notice.pk != first.pk
    assert (notice.balance_minor, notice.noticed_at) == (-300, thursday)
    assert notice.earliest_at == local(2026, 11, 27, 10, 0)
    warnings = list(Alert.objects.filter(kind=Alert.Kind.CUTOFF_WARNING).order_by("created_at"))
    assert len(warnings) == 2
    assert "off Fri 10:00 unless £3.01 is added" in warnings[1].message
    supply_reconcile(now=local(2026, 11, 27, 9, 59))
    assert _device(world).desired_relay == "on"
    supply_reconcile(now=local(2026, 11, 27, 10, 0))
    assert _device(world).desired_relay == "off"


@pytest.mark.django_db
def test_after_a_manual_on_is_released_a_cut_off_needs_a_new_notice(personas):
    from django.utils import timezone

    world = personas.a
    _protect(world, cutoff_days="1234567", cutoff_start=time(0), cutoff_end=time(0))
    start = timezone.now() - timedelta(days=3)
    _set_balance(world.prepaid_tenancy, -5)
    supply_evaluate(unit=world.prepaid, reason="test", now=start)
    supply_reconcile(now=start + timedelta(days=1))
    assert _device(world).desired_relay == "off"
    # given: the landlord turned the supply back on by hand for a while
    supply_override_set(unit=world.prepaid, state="on", reason="promised to pay", actor_id=None)
    _set_balance(world.prepaid_tenancy, -300)
    # when: the override is released
    supply_override_release(unit=world.prepaid, actor_id=None)
    # then: no cut-off under the old notice; a new one for today's amount
    assert _device(world).desired_relay == "on"
    notice = CutoffNotice.objects.get(status=CutoffNotice.Status.SCHEDULED)
    assert notice.balance_minor == -300 and notice.noticed_at > start + timedelta(days=2)
    assert notice.earliest_at == notice.noticed_at + timedelta(hours=24)
    supply_reconcile(now=notice.noticed_at + timedelta(hours=23, minutes=59))
    assert _device(world).desired_relay == "on"
    supply_reconcile(now=notice.noticed_at + timedelta(hours=24))
    assert _device(world).desired_relay == "off"


def _queued_cutoffs() -> list:
    from huey.contrib.djhuey import HUEY

    return [t for t in HUEY.scheduled() if t.args[0] == "supply.decision.supply_cutoff_due_task"]


@pytest.fixture
def huey_schedule():
    from huey.contrib.djhuey import HUEY

    HUEY.flush()
    yield HUEY
    HUEY.flush()


@pytest.mark.django_db
def test_a_cut_off_is_queued_for_the_moment_it_falls_due(
    personas, huey_schedule, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    from supply.decision import supply_cutoff_due

    world = personas.a
    _protect(world, cutoff_days="1234567", cutoff_start=time(0), cutoff_end=time(0))
    world.prop.cutoff_notice_minutes = 90
    world.prop.save()
    _set_balance(world.prepaid_tenancy, -5)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        supply_evaluate(unit=world.prepaid, reason="usage", now=now)
        supply_evaluate(unit=world.prepaid, reason="usage", now=now + timedelta(minutes=1))
    notice = CutoffNotice.objects.get(tenancy=world.prepaid_tenancy)
    assert notice.earliest_at == now + timedelta(minutes=90)
    # One task, queued for the notice's moment (Huey keeps its eta in naive UTC).
    [queued] = _queued_cutoffs()
    assert queued.eta.replace(tzinfo=UTC) == notice.earliest_at
    assert queued.args[1] == [world.prepaid.pk]
    # Run before its moment (as a consumer with a fast clock would), it changes nothing.
    queued.eta = None
    with django_capture_on_commit_callbacks(execute=True):
        huey_schedule.execute(queued)
    assert (
        supply_cutoff_due(unit_id=world.prepaid.pk, now=notice.earliest_at - timedelta(seconds=1))
        == []
    )
    assert _device(world).desired_relay == "on"
    # At its moment the cut-off is made, without waiting for the minute reconciliation.
    [command] = supply_cutoff_due(unit_id=world.prepaid.pk, now=notice.earliest_at)
    assert command.state == "off" and _device(world).desired_relay == "off"


@pytest.mark.django_db
def test_a_cut_off_missed_by_its_window_is_queued_for_the_next_opening(
    personas, huey_schedule, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    # A Tuesday ahead of the real clock: a task queued for a past moment would run at once.
    today = timezone.now().astimezone(LONDON).date()
    tuesday = today + timedelta(days=7 + (1 - today.weekday()) % 7)

    def at(days: int, hh: int, mm: int = 0) -> datetime:
        return datetime.combine(tuesday + timedelta(days=days), time(hh, mm), tzinfo=LONDON)

    world = personas.a
    _protect(world)
    _set_balance(world.prepaid_tenancy, -5)
    with django_capture_on_commit_callbacks(execute=True):
        supply_evaluate(unit=world.prepaid, reason="usage", now=at(0, 10))
    assert [t.eta.replace(tzinfo=UTC) for t in _queued_cutoffs()] == [at(1, 10)]
    huey_schedule.flush()
    # No consumer ran on Wednesday during the window; the first check after it closed.
    with django_capture_on_commit_callbacks(execute=True):
        supply_reconcile(now=at(1, 15, 30))
    assert _device(world).desired_relay == "on"
    notice = CutoffNotice.objects.get(tenancy=world.prepaid_tenancy)
    assert notice.earliest_at == at(2, 9)
    assert [t.eta.replace(tzinfo=UTC) for t in _queued_cutoffs()] == [notice.earliest_at]


@pytest.mark.django_db
def test_a_shorter_notice_period_does_not_bring_an_announced_cut_off_forward(personas):
    world = personas.a
    _protect(world)
    _set_balance(world.prepaid_tenancy, -5)
    supply_evaluate(unit=world.prepaid, reason="usage", now=local(2026, 11, 24, 10, 0))
    _protect(world, cutoff_notice_minutes=60)
    supply_evaluate(unit=world.prepaid, reason="protections changed", now=local(2026, 11, 24, 12))
    assert _device(world).desired_relay == "on"
    supply_reconcile(now=local(2026, 11, 25, 9, 59))
    assert _device(world).desired_relay == "on"
    supply_reconcile(now=local(2026, 11, 25, 10, 0))
    assert _device(world).desired_relay == "off"
