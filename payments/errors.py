"""Errors of the billing services whose message is for the person who asked."""


class BillingError(Exception):
    """A billing request that cannot be done; the message is for the person who asked."""
