from django.urls import path

from . import views

app_name = "tenant"
urlpatterns = [
    path("<int:tenancy_id>/", views.tenant_home, name="home"),
]
