from django.urls import path

from . import tenant_views, views

app_name = "tenant"
urlpatterns = [
    path("<int:tenancy_id>/", views.tenant_home, name="home"),
    path("<int:tenancy_id>/history/", tenant_views.tenant_history, name="history"),
    path("<int:tenancy_id>/usage/", tenant_views.tenant_usage, name="usage"),
    path("<int:tenancy_id>/usage.json", tenant_views.tenant_usage_data, name="usage_data"),
    path("<int:tenancy_id>/settings/", tenant_views.tenant_settings, name="settings"),
    path(
        "<int:tenancy_id>/settings/notifications/",
        tenant_views.tenant_notifications,
        name="notifications",
    ),
    path("<int:tenancy_id>/settings/email/", tenant_views.tenant_email, name="email"),
    path("<int:tenancy_id>/cant-pay/", tenant_views.tenant_cant_pay, name="cant_pay"),
    path("<int:tenancy_id>/cant-pay/plan/", tenant_views.tenant_plan_request, name="plan_request"),
    path(
        "<int:tenancy_id>/push/subscribe/",
        tenant_views.tenant_push_subscribe,
        name="push_subscribe",
    ),
    path(
        "<int:tenancy_id>/push/unsubscribe/",
        tenant_views.tenant_push_unsubscribe,
        name="push_unsubscribe",
    ),
    path("<int:tenancy_id>/topup-preview/", tenant_views.topup_preview, name="topup_preview"),
]
