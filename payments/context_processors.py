from django.http import HttpRequest

from .providers import get_provider


def payment_provider(request: HttpRequest) -> dict[str, object]:
    provider = get_provider()
    return {
        "payment_provider_name": provider.name if provider else "",
        "payment_provider_is_dev": bool(provider and provider.is_dev),
        "payments_available": provider is not None,
    }
