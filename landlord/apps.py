from django.apps import AppConfig


class LandlordConfig(AppConfig):
    name = "landlord"
    verbose_name = "Landlords, properties and tenancies"
