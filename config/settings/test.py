"""Test settings: the same services as production when DATABASE_URL / REDIS_URL are set."""

import os

from .base import *  # noqa: F403
from .base import HUEY, VAR_DIR

# Tasks run inline through the real Huey backend, so the queued code path is tested.
HUEY = {**HUEY, "immediate": True, "immediate_use_memory": True}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEBUG = False
if not os.environ.get("DATABASE_URL"):
    # A file-backed test database, so server subprocesses can share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}  # noqa: F405

# Each test process gets its own cache, so rate-limit counters never leak
# between runs that share a Redis.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
