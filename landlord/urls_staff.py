from django.urls import path

from . import views_staff as views

app_name = "staff"
urlpatterns = [
    path("", views.team, name="team"),
    path("invite/", views.member_invite, name="invite"),
    path("invitations/<int:invitation_id>/cancel/", views.member_invitation_cancel, name="cancel"),
    path("members/<int:membership_id>/role/", views.member_role, name="role"),
    path("members/<int:membership_id>/remove/", views.member_remove, name="remove"),
]
