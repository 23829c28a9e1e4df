"""Setting up: properties, units and tariffs (views in landlord.views_setup)."""

from django.urls import path

from . import views_setup as views

urlpatterns = [
    path("", views.setup_home, name="setup"),
    path("properties/new/", views.property_new, name="property_new"),
    path("properties/<int:property_id>/", views.property_edit, name="property_edit"),
    path("units/new/", views.unit_new, name="unit_new"),
    path("units/import/", views.unit_import, name="unit_import"),
    path("units/<int:unit_id>/", views.unit_edit, name="unit_edit"),
    path("units/<int:unit_id>/archive/", views.unit_archive_view, name="unit_archive"),
    path("tariffs/new/", views.tariff_new, name="tariff_new"),
    path("tariffs/<int:tariff_id>/", views.tariff_detail, name="tariff"),
]
