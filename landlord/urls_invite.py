from django.urls import path

from . import views_people, views_staff

urlpatterns = [
    path("team/<str:team_token>/", views_staff.member_invite_accept, name="member_invite"),
    path("<str:token>/", views_people.invite_accept, name="invite"),
]
