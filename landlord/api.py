"""Read-only JSON API (session authenticated). Scoped exactly like the pages."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from . import access, selectors


class UnitStateSerializer(serializers.Serializer):
    unit_id = serializers.IntegerField(source="unit.pk")
    name = serializers.CharField(source="unit.name")
    property = serializers.CharField(source="unit.property.name")
    billing_mode = serializers.CharField(source="unit.billing_mode")
    currency = serializers.CharField()
    balance_minor = serializers.IntegerField(allow_null=True)
    low_credit = serializers.BooleanField()
    relay_desired = serializers.CharField()
    relay_reported = serializers.CharField()
    device_connected = serializers.BooleanField()
    last_reading_at = serializers.DateTimeField(allow_null=True)
    last_register_wh = serializers.IntegerField(allow_null=True)


@extend_schema(responses=UnitStateSerializer(many=True))
@api_view(["GET"])
def unit_list(request: Request) -> Response:
    landlord = access.landlord_for_user(user=request.user)
    rows = selectors.landlord_unit_views(landlord_id=landlord.pk)
    return Response(UnitStateSerializer(rows, many=True).data)


@extend_schema(responses=UnitStateSerializer)
@api_view(["GET"])
def tenancy_state(request: Request, tenancy_id: int) -> Response:
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    return Response(UnitStateSerializer(selectors.tenancy_view(tenancy=tenancy)).data)
