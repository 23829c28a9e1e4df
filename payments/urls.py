from django.urls import path

from . import billing_views, views

app_name = "payments"
urlpatterns = [
    path("tenancies/<int:tenancy_id>/topup/", views.topup, name="topup"),
    path("dev-checkout/<uuid:payment_uuid>/", views.dev_checkout, name="dev_checkout"),
    path("<uuid:payment_uuid>/", views.payment_status, name="status"),
    path("invoices/<int:invoice_id>/", billing_views.invoice_detail, name="invoice"),
    path(
        "tenancies/<int:tenancy_id>/emergency-credit/",
        billing_views.emergency_credit,
        name="emergency_credit",
    ),
]
