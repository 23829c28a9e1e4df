"""A landlord's team (landlord/staff.py and its pages): owners invite people by email,
change roles and remove members; the last owner stays; refusals change nothing."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.test import Client
from django.urls import reverse

from landlord import staff
from landlord.models import AuditEvent, MemberInvitation, Membership
from landlord.people import InvitationInvalid

User = get_user_model()
Role = Membership.Role
SITE = "https://submeter.example.com/"
PASSWORD = "a-long-pass-phrase-9"


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _invite(world, capture, *, email="New.Person@example.com", role=Role.STAFF):
    with capture(execute=True):
        return staff.member_invite(
            landlord=world.landlord, email=email, role=role, site_url=SITE, actor_id=world.staff.pk
        )


def _token_from_mail() -> str:
    link = next(line for line in mail.outbox[-1].body.splitlines() if "/invite/team/" in line)
    return link.rstrip("/").rsplit("/", 1)[1]


def _owner(world) -> Membership:
    return Membership.objects.get(landlord=world.landlord, user=world.staff)


# --- invitations ----------------------------------------------------------------------


def test_an_invited_person_sets_a_password_and_joins_once(
    personas, django_capture_on_commit_callbacks
):
    invitation = _invite(personas.a, django_capture_on_commit_callbacks)
    assert mail.outbox[-1].to == ["new.person@example.com"]
    assert f"{SITE}invite/team/" in mail.outbox[-1].body
    token = _token_from_mail()

    membership = staff.member_invitation_accept(token=token, password=PASSWORD)

    assert membership.landlord == personas.a.landlord and membership.role == Role.STAFF
    assert membership.user.check_password(PASSWORD)
    assert membership.user.email == "new.person@example.com"
    invitation.refresh_from_db()
    assert invitation.used_at is not None and invitation.membership == membership
    assert AuditEvent.objects.filter(action="member.invited", actor=personas.a.staff).exists()
    assert AuditEvent.objects.get(action="member.joined").actor == membership.user
    # reused
    with pytest.raises(InvitationInvalid, match="already used"):
        staff.member_invitation_accept(token=token, password="another-long-pass-7")
    assert Membership.objects.filter(landlord=personas.a.landlord).count() == 2


def test_an_expired_invitation_creates_nothing(
    personas, django_capture_on_commit_callbacks, monkeypatch
):
    invitation = _invite(personas.a, django_capture_on_commit_callbacks)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 8 * 86400)
    token = staff.member_invitation_token(invitation)
    monkeypatch.setattr(time, "time", real)
    users = User.objects.count()
    with pytest.raises(InvitationInvalid, match="expired"):
        staff.member_invitation_accept(token=token, password=PASSWORD)
    assert User.objects.count() == users
    invitation.refresh_from_db()
    assert invitation.used_at is None


def test_a_tampered_or_tenant_invitation_token_creates_nothing(
    personas, django_capture_on_commit_callbacks
):
    invitation = _invite(personas.a, django_capture_on_commit_callbacks)
    token = staff.member_invitation_token(invitation)
    forged = signing.dumps({"member_invitation": invitation.pk}, salt="landlord.invitation")
    for bad in (token[:-3] + "abc", forged, "nonsense"):
        with pytest.raises(InvitationInvalid, match="not a valid invitation"):
            staff.member_invitation_accept(token=bad, password=PASSWORD)
    assert not User.objects.filter(email="new.person@example.com").exists()


def test_a_withdrawn_invitation_cannot_be_accepted(personas, django_capture_on_commit_callbacks):
    invitation = _invite(personas.a, django_capture_on_commit_callbacks)
    staff.member_invitation_cancel(invitation=invitation, actor_id=personas.a.staff.pk)
    with pytest.raises(InvitationInvalid, match="withdrawn"):
        staff.member_invitation_accept(
            token=staff.member_invitation_token(invitation), password=PASSWORD
        )
    assert AuditEvent.objects.get(action="member.invitation_cancelled").actor == personas.a.staff


def test_inviting_an_existing_member_is_refused(personas, django_capture_on_commit_callbacks):
    world = personas.a
    for email in (world.staff.get_username(), world.staff.get_username().upper()):
        with pytest.raises(staff.StaffError, match="member of Landlord a already"):
            _invite(world, django_capture_on_commit_callbacks, email=email)
    assert not MemberInvitation.objects.exists()
    assert mail.outbox == []


def test_a_bad_role_is_refused(personas, django_capture_on_commit_callbacks):
    with pytest.raises(staff.StaffError, match="owner or staff"):
        _invite(personas.a, django_capture_on_commit_callbacks, role="admin")
    assert not MemberInvitation.objects.exists()


def test_a_weak_password_is_refused(personas, django_capture_on_commit_callbacks):
    invitation = _invite(personas.a, django_capture_on_commit_callbacks)
    with pytest.raises(staff.StaffError, match="too short"):
        staff.member_invitation_accept(
            token=staff.member_invitation_token(invitation), password="abc"
        )
    assert not User.objects.filter(email=invitation.email).exists()


def test_an_existing_account_signs_in_and_accepts(personas, django_capture_on_commit_callbacks):
    person = User.objects.create_user("pat", email="pat@example.com", password="pw")
    invitation = _invite(personas.a, django_capture_on_commit_callbacks, email="PAT@example.com")
    token = staff.member_invitation_token(invitation)
    assert "sign in with your account" in mail.outbox[-1].body
    # a password does not make a second account
    with pytest.raises(staff.StaffError, match="exists already"):
        staff.member_invitation_accept(token=token, password=PASSWORD)
    # another account cannot take it
    with pytest.raises(staff.StaffError, match=r"for pat@example\.com"):
        staff.member_invitation_accept_as(token=token, user=personas.a.prepaid_tenant)

    membership = staff.member_invitation_accept_as(token=token, user=person)

    assert membership.user == person and membership.landlord == personas.a.landlord


def test_a_member_of_another_landlord_cannot_join(personas, django_capture_on_commit_callbacks):
    other = personas.b.staff
    other.email = "b-owner@example.com"
    other.save(update_fields=["email"])
    invitation = _invite(personas.a, django_capture_on_commit_callbacks, email=other.email)
    with pytest.raises(staff.StaffError, match="another landlord"):
        staff.member_invitation_accept_as(
            token=staff.member_invitation_token(invitation), user=other
        )
    assert not Membership.objects.filter(landlord=personas.a.landlord, user=other).exists()


# --- roles ------------------------------------------------------------------------------


def test_roles_change_but_the_last_owner_stays(everyone):
    world = everyone.a
    owner = _owner(world)
    member = Membership.objects.get(user=everyone.a_staff)
    with pytest.raises(staff.StaffError, match="only owner"):
        staff.member_role_set(membership=owner, role=Role.STAFF, actor_id=world.staff.pk)
    owner.refresh_from_db()
    assert owner.role == Role.OWNER

    staff.member_role_set(membership=member, role=Role.OWNER, actor_id=world.staff.pk)
    staff.member_role_set(membership=owner, role=Role.STAFF, actor_id=everyone.a_staff.pk)

    owner.refresh_from_db()
    member.refresh_from_db()
    assert (owner.role, member.role) == (Role.STAFF, Role.OWNER)
    changes = AuditEvent.objects.filter(action="member.role_changed").order_by("at", "pk")
    assert [(e.actor, e.data["to"]) for e in changes] == [
        (world.staff, "owner"),
        (everyone.a_staff, "staff"),
    ]
    with pytest.raises(staff.StaffError, match="owner or staff"):
        staff.member_role_set(membership=member, role="boss", actor_id=None)


def test_removing_a_member_but_never_the_last_owner(everyone):
    world = everyone.a
    with pytest.raises(staff.StaffError, match="only owner"):
        staff.member_remove(membership=_owner(world), actor_id=world.staff.pk)
    assert Membership.objects.filter(landlord=world.landlord).count() == 2

    staff.member_remove(
        membership=Membership.objects.get(user=everyone.a_staff), actor_id=world.staff.pk
    )

    assert not Membership.objects.filter(user=everyone.a_staff).exists()
    assert User.objects.filter(pk=everyone.a_staff.pk).exists()  # the account stays
    assert AuditEvent.objects.get(action="member.removed").actor == world.staff


# --- pages ----------------------------------------------------------------------------


def test_the_owner_invites_from_the_team_page_and_the_person_joins(
    personas, django_capture_on_commit_callbacks
):
    owner = _client(personas.a.staff)
    page = owner.get(reverse("landlord:staff:team"))
    assert page.status_code == 200 and "Send invitation" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        resp = owner.post(
            reverse("landlord:staff:invite"), {"email": "sam@example.com", "role": "staff"}
        )
    assert resp.status_code == 302
    assert "sam@example.com" in owner.get(reverse("landlord:staff:team")).content.decode()

    link = reverse("member_invite", args=[_token_from_mail()])
    newcomer = Client()
    assert "Choose a password" in newcomer.get(link).content.decode()
    resp = newcomer.post(link, {"password1": PASSWORD, "password2": PASSWORD})
    assert resp.status_code == 302 and resp["Location"] == reverse("landlord:units")
    assert newcomer.get(reverse("landlord:units")).status_code == 200
    assert Membership.objects.get(user__username="sam@example.com").role == Role.STAFF
    # the link is used up
    assert Client().get(link).status_code == 400


def test_a_bad_invitation_form_keeps_what_was_typed(personas):
    owner = _client(personas.a.staff)
    resp = owner.post(
        reverse("landlord:staff:invite"), {"email": personas.a.staff.get_username() + "@x"}
    )
    assert resp.status_code == 400
    body = resp.content.decode()
    assert 'value="landlord_a@x"' in body
    assert not MemberInvitation.objects.exists()


def test_an_existing_account_is_sent_to_sign_in_first(personas, django_capture_on_commit_callbacks):
    person = User.objects.create_user("pat", email="pat@example.com", password="pw")
    invitation = _invite(personas.a, django_capture_on_commit_callbacks, email="pat@example.com")
    link = reverse("member_invite", args=[staff.member_invitation_token(invitation)])
    anonymous = Client()
    assert "Sign in to accept" in anonymous.get(link).content.decode()
    resp = anonymous.post(link)
    assert resp.status_code == 302 and resp["Location"].startswith(reverse("login"))
    assert not Membership.objects.filter(user=person).exists()

    resp = _client(person).post(link)

    assert resp.status_code == 302
    assert Membership.objects.get(user=person).landlord == personas.a.landlord


def test_the_last_owner_cannot_demote_themself_on_the_page(personas):
    owner = _client(personas.a.staff)
    membership = _owner(personas.a)
    resp = owner.post(reverse("landlord:staff:role", args=[membership.pk]), {"role": "staff"})
    assert resp.status_code == 400
    assert "only owner" in resp.content.decode()
    resp = owner.post(reverse("landlord:staff:remove", args=[membership.pk]))
    assert resp.status_code == 400
    membership.refresh_from_db()
    assert membership.role == Role.OWNER


def test_staff_see_the_team_but_cannot_change_it(everyone, django_capture_on_commit_callbacks):
    client = _client(everyone.a_staff)
    page = client.get(reverse("landlord:staff:team"))
    assert page.status_code == 200
    assert "Send invitation" not in page.content.decode()
    owner = _owner(everyone.a)
    assert (
        client.post(reverse("landlord:staff:role", args=[owner.pk]), {"role": "staff"}).status_code
        == 403
    )
    assert client.post(reverse("landlord:staff:remove", args=[owner.pk])).status_code == 403
    assert (
        client.post(
            reverse("landlord:staff:invite"), {"email": "x@example.com", "role": "owner"}
        ).status_code
        == 403
    )
    invitation = _invite(everyone.a, django_capture_on_commit_callbacks)
    assert client.post(reverse("landlord:staff:cancel", args=[invitation.pk])).status_code == 403
    owner.refresh_from_db()
    assert owner.role == Role.OWNER
    assert MemberInvitation.objects.count() == 1


def test_another_landlords_members_are_not_found(everyone):
    b_owner = Membership.objects.get(user=everyone.b.staff)
    client = _client(everyone.a.staff)
    assert client.post(reverse("landlord:staff:remove", args=[b_owner.pk])).status_code == 404
    assert (
        client.post(
            reverse("landlord:staff:role", args=[b_owner.pk]), {"role": "staff"}
        ).status_code
        == 404
    )
    assert Membership.objects.filter(pk=b_owner.pk).exists()
