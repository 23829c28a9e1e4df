from django.urls import path

from . import billing_views, views

app_name = "payments"
urlpatterns = [
    path("tenancies/<int:tenancy_id>/topup/", views.topup, name="topup"),
    path("tenancies/<int:tenancy_id>/deposit/", views.deposit_pay, name="deposit_pay"),
    path("tenancies/<int:tenancy_id>/automatic/", views.automatic_payments, name="automatic"),
    path(
        "tenancies/<int:tenancy_id>/methods/<int:method_id>/remove/",
        views.saved_method_remove,
        name="method_remove",
    ),
    path("dev-checkout/<uuid:payment_uuid>/", views.dev_checkout, name="dev_checkout"),
    path("<uuid:payment_uuid>/", views.payment_status, name="status"),
    path("invoices/<int:invoice_id>/", billing_views.invoice_detail, name="invoice"),
    path("invoices/<int:invoice_id>/print/", billing_views.invoice_print, name="invoice_print"),
    path("invoices/<int:invoice_id>/pdf/", billing_views.invoice_pdf, name="invoice_pdf"),
    path(
        "tenancies/<int:tenancy_id>/emergency-credit/",
        billing_views.emergency_credit,
        name="emergency_credit",
    ),
    path("<uuid:payment_uuid>/confirm/", views.payment_resume, name="resume"),
    path("landlord/", views.landlord_payments, name="landlord_payments"),
    path("landlord/account/", views.connect, name="connect"),
    path("landlord/account/onboarding/", views.connect_start, name="connect_start"),
    path("landlord/<uuid:payment_uuid>/refund/", views.refund, name="refund"),
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
    path("stripe/connect-webhook/", views.stripe_connect_webhook, name="stripe_connect_webhook"),
]
