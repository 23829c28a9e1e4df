from django.urls import include, path

from . import views, views_reports

app_name = "landlord"
urlpatterns = [
    path("units/", views.landlord_units, name="units"),
    path("units/<int:unit_id>/", views.landlord_unit_detail, name="unit"),
    path("flagged/", views.landlord_flagged, name="flagged"),
    path("units/<int:unit_id>/override/", views.landlord_unit_override, name="override"),
    path(
        "units/<int:unit_id>/override/release/",
        views.landlord_unit_override_release,
        name="override_release",
    ),
    path(
        "units/<int:unit_id>/plan-requests/<int:request_id>/answer/",
        views.landlord_plan_answer,
        name="plan_answer",
    ),
    path("held/<int:interval_id>/release/", views.landlord_held_release, name="held_release"),
    path("bills/", views_reports.landlord_bills, name="bills"),
    path("arrears/", views_reports.landlord_arrears_page, name="arrears"),
    path("ledger/", views_reports.landlord_ledger, name="ledger"),
    path("exports/", views_reports.landlord_exports, name="exports"),
    path("", include("landlord.urls_people")),
    path("setup/", include("landlord.urls_setup")),
    path("team/", include("landlord.urls_staff")),
]
