from django.urls import path

from . import api

urlpatterns = [
    path("units/", api.unit_list, name="api-units"),
    path("tenancies/<int:tenancy_id>/", api.tenancy_state, name="api-tenancy"),
]
