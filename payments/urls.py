from django.urls import path

from . import views

app_name = "payments"
urlpatterns = [
    path("tenancies/<int:tenancy_id>/topup/", views.topup, name="topup"),
    path("dev-checkout/<uuid:payment_uuid>/", views.dev_checkout, name="dev_checkout"),
    path("<uuid:payment_uuid>/", views.payment_status, name="status"),
]
