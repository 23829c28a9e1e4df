"""Production: PostgreSQL, Redis, HTTPS. Every secret comes from the environment."""

import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403

DEBUG = False
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY or SECRET_KEY.startswith("dev-only"):
    raise ImproperlyConfigured("Set SECRET_KEY to a long random value in production.")

for required, why in (
    ("DATABASE_URL", "several workers need a shared database"),
    ("REDIS_URL", "several workers need a shared channel layer, queue and cache"),
    ("EMAIL_HOST", "alerts to tenants and landlords go by email"),
):
    if not os.environ.get(required):
        raise ImproperlyConfigured(f"Set {required}: {why}.")
DEVELOPMENT_PAYMENTS = env_bool("DEVELOPMENT_PAYMENTS", False)  # noqa: F405

# Behind one TLS proxy by default (docs/operations.md); its X-Forwarded-For
# names the client for rate limits.
SUBMETER = {**SUBMETER, "TRUSTED_PROXIES": int(os.environ.get("TRUSTED_PROXIES", "1"))}  # noqa: F405

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)  # noqa: F405
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = False
