from django.urls import path

from . import views_people as views

app_name = "people"
urlpatterns = [
    path("units/<int:unit_id>/devices/", views.unit_devices, name="devices"),
    path("units/<int:unit_id>/devices/new/", views.unit_device_register, name="device_register"),
    path(
        "units/<int:unit_id>/devices/<int:device_id>/secret/",
        views.unit_device_rotate,
        name="device_rotate",
    ),
    path(
        "units/<int:unit_id>/meters/<int:meter_id>/event/",
        views.unit_meter_event,
        name="meter_event",
    ),
    path(
        "units/<int:unit_id>/devices/<int:device_id>/move/",
        views.unit_device_move,
        name="device_move",
    ),
    path("units/<int:unit_id>/tenants/", views.unit_tenants, name="tenants"),
    path("units/<int:unit_id>/tenants/invite/", views.unit_tenant_invite, name="invite"),
    path("units/<int:unit_id>/billing-mode/", views.unit_billing_mode, name="billing_mode"),
    path(
        "units/<int:unit_id>/billing-mode/schedule/",
        views.unit_mode_schedule,
        name="mode_schedule",
    ),
    path(
        "units/<int:unit_id>/billing-mode/schedule/<int:switch_id>/cancel/",
        views.unit_mode_schedule_cancel,
        name="mode_schedule_cancel",
    ),
    path("tenancies/<int:tenancy_id>/move-in/", views.tenancy_move_in, name="move_in"),
    path("tenancies/<int:tenancy_id>/move-out/", views.tenancy_move_out, name="move_out"),
    path("tenancies/<int:tenancy_id>/statement/", views.tenancy_statement, name="statement"),
    path("tenancies/<int:tenancy_id>/deposit/", views.tenancy_deposit, name="deposit"),
]
