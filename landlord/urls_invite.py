from django.urls import path

from . import views_people

urlpatterns = [
    path("<str:token>/", views_people.invite_accept, name="invite"),
]
