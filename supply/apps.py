from django.apps import AppConfig


class SupplyConfig(AppConfig):
    name = "supply"
    verbose_name = "Supply: cut-offs, protections, relay commands and alerts"
