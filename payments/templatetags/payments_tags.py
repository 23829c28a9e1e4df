from django import template

from landlord.models import Tenancy
from payments.selectors import tenant_payment_context

register = template.Library()


@register.simple_tag
def tenant_payments(tenancy: Tenancy) -> dict[str, object]:
    """Whether the tenant can pay, their saved card and payments waiting for confirmation."""
    return tenant_payment_context(tenancy=tenancy)
