from django.urls import path

from . import views

app_name = "disputes"
urlpatterns = [
    path("tenant/<int:tenancy_id>/disputes/", views.tenant_disputes, name="tenant_list"),
    path("tenant/<int:tenancy_id>/disputes/new/", views.dispute_new, name="new"),
    path("disputes/<int:dispute_id>/", views.dispute_detail, name="detail"),
    path("disputes/<int:dispute_id>/respond/", views.dispute_respond, name="respond"),
    path("disputes/<int:dispute_id>/accept/", views.dispute_accept, name="accept"),
    path("disputes/<int:dispute_id>/escalate/", views.dispute_escalate, name="escalate"),
    path("disputes/<int:dispute_id>/withdraw/", views.dispute_withdraw, name="withdraw"),
    path("disputes/<int:dispute_id>/message/", views.dispute_message, name="message"),
    path(
        "disputes/<int:dispute_id>/files/<int:attachment_id>/",
        views.dispute_attachment,
        name="attachment",
    ),
    path("landlord/disputes/", views.landlord_disputes, name="landlord_list"),
    path("desk/", views.desk, name="desk"),
    path("desk/disputes/<int:dispute_id>/", views.desk_case, name="desk_case"),
    path("desk/disputes/<int:dispute_id>/assign/", views.desk_assign, name="desk_assign"),
    path("desk/disputes/<int:dispute_id>/resolve/", views.desk_resolve, name="desk_resolve"),
    path("desk/disputes/<int:dispute_id>/refund/", views.desk_refund, name="desk_refund"),
    path("desk/disputes/<int:dispute_id>/approve/", views.desk_approve, name="desk_approve"),
    path("desk/disputes/<int:dispute_id>/decline/", views.desk_decline, name="desk_decline"),
    path("desk/disputes/<int:dispute_id>/reject/", views.desk_reject, name="desk_reject"),
    path("desk/chargebacks/<int:chargeback_id>/", views.desk_chargeback, name="desk_chargeback"),
]
