"""Forms of the team pages (landlord/views_staff.py)."""

from __future__ import annotations

from django import forms

from .models import Membership


class MemberInviteForm(forms.Form):
    email = forms.EmailField(label="Their email")
    role = forms.ChoiceField(
        label="Role",
        choices=Membership.Role.choices,
        initial=Membership.Role.STAFF,
        widget=forms.RadioSelect,
        help_text="Staff run the day-to-day work: devices, tenants, supply on. Owners also "
        "set up properties, units and prices, refund, cut a supply off and manage the team.",
    )


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Membership.Role.choices)
