from django.http import HttpRequest

from .providers import get_provider


def payment_provider(request: HttpRequest) -> dict[str, object]:
    provider = get_provider()
    return {"payment_provider_name": provider.name, "payment_provider_is_dev": provider.is_dev}
