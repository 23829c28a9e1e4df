"""Settings shared by every way of running, read from the environment.

Without any environment the project runs on the embedded default: SQLite in
WAL mode, the in-memory channel layer, a Huey queue in a SQLite file consumed
inside the server process, and the development payment provider. Setting
``DATABASE_URL`` and ``REDIS_URL`` moves it onto PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("SUBMETER_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)
(VAR_DIR / "static").mkdir(exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-insecure-key-change-me-in-production")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "django_htmx",
    "huey.contrib.djhuey",
    "landlord",
    "meters",
    "supply",
    "payments",
    "disputes",
    "config",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.SyncChain",  # keep last: see its docstring
]

# Django's database sessions, read by a query compiled once per process.
SESSION_ENGINE = "config.sessions"

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "payments.context_processors.payment_provider",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # A connection pool per process: opening a PostgreSQL connection costs
        # milliseconds, and every socket event and request would otherwise pay it.
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": int(os.environ.get("DATABASE_POOL_MIN", "2")),
            "max_size": int(os.environ.get("DATABASE_POOL_MAX", "10")),
            "timeout": 30,
        }
else:
    # SQLite under concurrent web + worker load: WAL, a busy timeout and
    # IMMEDIATE transactions so writers queue instead of failing.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(VAR_DIR / "db.sqlite3")),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                ),
            },
            # A connection is kept by its thread (a server's request threads are
            # kept: config/handler.py) and closed after this many seconds, or as
            # soon as a request finds it failed. Opening one costs milliseconds.
            "CONN_MAX_AGE": int(os.environ.get("CONN_MAX_AGE", "600")),
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels and queues --------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "config.layers.RedisChannelLayer",
            "CONFIG": {
                # Redis connections per process and event loop; commands beyond
                # it wait for a free one (config/layers.py).
                "max_connections": int(os.environ.get("CHANNEL_REDIS_MAX_CONNECTIONS", "100")),
                # redis-py 8 defaults socket_timeout to 5 s, which aborts the layer's
                # blocking BZPOPMIN on idle sockets (channels_redis#422): disable it.
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "prefix": os.environ.get("CHANNEL_PREFIX", "asgi"),
            },
        }
    }
    HUEY = {
        "huey_class": "huey.RedisHuey",
        "name": os.environ.get("HUEY_NAME", "submeter"),
        "url": REDIS_URL,
        "immediate": False,
        "utc": True,
        "consumer": {"workers": 4, "worker_type": "thread"},
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": "submeter",
        "filename": os.environ.get("HUEY_SQLITE_PATH", str(VAR_DIR / "huey.sqlite3")),
        "immediate": False,
        "utc": True,
        "consumer": {"workers": 2, "worker_type": "thread"},
    }

# The cache carries rate-limit counters, so it must be shared by all workers.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_PREFIX", "cache"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# django.tasks is the only API the code uses to enqueue; Huey does the work.
TASKS = {"default": {"BACKEND": "config.tasks.HueyTaskBackend"}}

# --- Auth -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- I18N -----------------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static ---------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Uploaded files (dispute evidence) live here and are never served by URL:
# only through views that check who is asking (MEDIA_URL is not routed).
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- API ------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Submeter API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Payments -------------------------------------------------------------
# The development provider completes payments locally without moving money.
# It is the default on a developer's machine and refused in production
# unless deliberately enabled (e.g. a staging site).
DEVELOPMENT_PAYMENTS = env_bool("DEVELOPMENT_PAYMENTS", True)
# Stripe is used whenever a secret key is set (and then the development
# provider never is). See docs/payments.md.
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
# Signing secrets of the two webhook endpoints (platform events, Connect events).
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_CONNECT_WEBHOOK_SECRET = os.environ.get("STRIPE_CONNECT_WEBHOOK_SECRET", "")
# Seconds a webhook signature stays valid (Stripe's own default is 300).
STRIPE_WEBHOOK_TOLERANCE = int(os.environ.get("STRIPE_WEBHOOK_TOLERANCE", "300"))
# The platform's application fee on every tenant payment: basis points of the
# amount plus a fixed part, in minor units.
STRIPE_APPLICATION_FEE_BPS = int(os.environ.get("STRIPE_APPLICATION_FEE_BPS", "100"))
STRIPE_APPLICATION_FEE_FIXED_MINOR = int(os.environ.get("STRIPE_APPLICATION_FEE_FIXED_MINOR", "0"))

# --- Web Push ---------------------------------------------------------------
# Phone notifications of tenant alerts beside their emails (landlord/push.py).
# Off while the keys are unset; ``manage.py push_keys`` prints a new pair.
# The subject is how a push service reaches the operator (mailto: or https:).
VAPID_PUBLIC_KEY = os.environ.get("VAPID_PUBLIC_KEY", "")
VAPID_PRIVATE_KEY = os.environ.get("VAPID_PRIVATE_KEY", "")
VAPID_SUBJECT = os.environ.get("VAPID_SUBJECT", "mailto:operations@example.com")
# The push services a subscription may name (host, or a suffix after a dot): the
# server sends to the endpoint a browser gives, so only to these. Chrome/Edge
# (FCM), Firefox (Mozilla autopush), Windows (WNS) and Safari (Apple).
PUSH_SERVICE_HOSTS = [
    host.strip()
    for host in os.environ.get(
        "PUSH_SERVICE_HOSTS",
        "fcm.googleapis.com,updates.push.services.mozilla.com,notify.windows.com,push.apple.com",
    ).split(",")
    if host.strip()
]

# --- Product settings -----------------------------------------------------
SUBMETER: dict[str, Any] = {
    # Smallest and largest single top-up, in minor units of the currency.
    "TOPUP_MIN_MINOR": int(os.environ.get("TOPUP_MIN_MINOR", "100")),
    "TOPUP_MAX_MINOR": int(os.environ.get("TOPUP_MAX_MINOR", "50000")),
    # Postpaid: the tenant is reminded of an unpaid bill this many days before
    # its due date (and once more the day after it, if still unpaid).
    "BILL_REMINDER_DAYS_BEFORE": int(os.environ.get("BILL_REMINDER_DAYS_BEFORE", "3")),
    # A device that has not been heard from for this long is shown as quiet.
    "LIVE_STALE_SECONDS": int(os.environ.get("LIVE_STALE_SECONDS", "120")),
    # Live pages' sockets get a heartbeat this often; a page that hears nothing for
    # a little over two of them says "reconnecting…" and opens a new socket.
    "LIVE_HEARTBEAT_SECONDS": int(os.environ.get("LIVE_HEARTBEAT_SECONDS", "15")),
    # The landlord's home lists a connected meter as "silent" when no reading came
    # for this long (a meter reports every few seconds to a minute), and a relay as
    # "not switching" when a command is neither acknowledged nor superseded this long
    # after it was made (about four re-sends at the default retry timing).
    "METER_SILENT_MINUTES": int(os.environ.get("METER_SILENT_MINUTES", "30")),
    "RELAY_STUCK_SECONDS": int(os.environ.get("RELAY_STUCK_SECONDS", "120")),
    # The landlord's home re-sends what needs attention and its numbers at most this often.
    "LIVE_SUMMARY_SECONDS": float(os.environ.get("LIVE_SUMMARY_SECONDS", "5")),
    # Readings further in the future than this are rejected.
    "FUTURE_TOLERANCE_SECONDS": int(os.environ.get("FUTURE_TOLERANCE_SECONDS", "300")),
    # Readings taken longer ago than this (or before 2000) are rejected: a
    # clock reset to an epoch, not a meter's buffer.
    "READING_MAX_AGE_DAYS": int(os.environ.get("READING_MAX_AGE_DAYS", "3650")),
    # Raw readings older than this many days are thinned to the last of each
    # day once their slots are priced and posted (meters.retention), and
    # intake refuses readings that old; 0 keeps every reading.
    "READING_RETENTION_DAYS": int(os.environ.get("READING_RETENTION_DAYS", "0")),
    # Above this average power between two readings a delta is implausible.
    "MAX_PLAUSIBLE_POWER_W": int(os.environ.get("MAX_PLAUSIBLE_POWER_W", "100000")),
    # Relay command retry: first re-send after this many seconds, doubling.
    "RELAY_RETRY_SECONDS": float(os.environ.get("RELAY_RETRY_SECONDS", "5")),
    "RELAY_RETRY_MAX_SECONDS": float(os.environ.get("RELAY_RETRY_MAX_SECONDS", "60")),
    # Sends of one command a relay may answer without switching before the
    # server stops and alerts the landlord (10: about six minutes at the above).
    "RELAY_MAX_ATTEMPTS": int(os.environ.get("RELAY_MAX_ATTEMPTS", "10")),
    "DEVICE_HEARTBEAT_SECONDS": int(os.environ.get("DEVICE_HEARTBEAT_SECONDS", "30")),
    # A device socket looks at the command outbox at least this often, in case
    # a channel-layer wake-up was lost.
    "RELAY_SAFETY_CHECK_SECONDS": float(os.environ.get("RELAY_SAFETY_CHECK_SECONDS", "15")),
    "MAX_READINGS_PER_FRAME": 500,
    # Readings written in one transaction by a process's device sockets
    # (meters/intake.py): many frames, one commit.
    "INTAKE_BATCH_READINGS": int(os.environ.get("INTAKE_BATCH_READINGS", "5000")),
    # Batches a process writes at once, each on its own database connection
    # (keep it below the pool's DATABASE_POOL_MAX).
    "INTAKE_WRITERS": int(os.environ.get("INTAKE_WRITERS", "2")),
    # Failed sign-ins allowed per account and per address in the window.
    "LOGIN_MAX_FAILURES": int(os.environ.get("LOGIN_MAX_FAILURES", "5")),
    "LOGIN_WINDOW_SECONDS": int(os.environ.get("LOGIN_WINDOW_SECONDS", "900")),
    # Failed device connects (bad credentials) allowed per client address.
    "DEVICE_AUTH_MAX_FAILURES": int(os.environ.get("DEVICE_AUTH_MAX_FAILURES", "20")),
    "DEVICE_AUTH_WINDOW_SECONDS": int(os.environ.get("DEVICE_AUTH_WINDOW_SECONDS", "300")),
    # Reverse proxies in front of the app whose X-Forwarded-For is trusted.
    "TRUSTED_PROXIES": int(os.environ.get("TRUSTED_PROXIES", "0")),
    # Threads a server process keeps for HTTP requests' synchronous code, each with
    # its database connection (config/handler.py), started as requests need them;
    # a request that finds them all busy waits this long for one, then gets a
    # thread of its own for the request.
    "HTTP_THREADS": int(os.environ.get("HTTP_THREADS", "32")),
    "HTTP_THREAD_WAIT_SECONDS": float(os.environ.get("HTTP_THREAD_WAIT_SECONDS", "0.25")),
    # Python's garbage collector thresholds in a server process (gc.set_threshold):
    # the third says how many middle-generation collections make a full one.
    "GC_THRESHOLDS": tuple(
        int(v) for v in os.environ.get("GC_THRESHOLDS", "700,10,1000").split(",")
    ),
    # Reading validation: a gap longer than this is spread and marked estimated;
    # longer than LONG_GAP its energy is held, not spread over invented slots.
    "ESTIMATE_GAP_SECONDS": int(os.environ.get("ESTIMATE_GAP_SECONDS", "900")),
    "LONG_GAP_SECONDS": int(os.environ.get("LONG_GAP_SECONDS", "21600")),
    # Usage is posted to the ledger in windows of this length (sooner when a
    # prepaid balance nears its low-credit threshold).
    "DEBIT_WINDOW_SECONDS": int(os.environ.get("DEBIT_WINDOW_SECONDS", "900")),
    # Payment events not applied this long after arriving are applied by the
    # periodic re-drive (their task was lost); events still unresolved after
    # PAYMENT_EVENT_ALERT_MINUTES are logged at error level, once each.
    "PAYMENT_EVENT_REDRIVE_SECONDS": int(os.environ.get("PAYMENT_EVENT_REDRIVE_SECONDS", "60")),
    "PAYMENT_EVENT_ALERT_MINUTES": int(os.environ.get("PAYMENT_EVENT_ALERT_MINUTES", "60")),
    # Share of each top-up that repays emergency credit.
    "DEBT_RECOVERY_PERCENT": int(os.environ.get("DEBT_RECOVERY_PERCENT", "25")),
    # A device missing this many heartbeats in a row is reported offline to the landlord.
    "DEVICE_OFFLINE_MISSED_HEARTBEATS": int(
        os.environ.get("DEVICE_OFFLINE_MISSED_HEARTBEATS", "3")
    ),
    # Low-credit alerts re-arm only once the balance is this much above the threshold
    # (or a quarter of the threshold, whichever is more).
    "LOW_CREDIT_HYSTERESIS_MINOR": int(os.environ.get("LOW_CREDIT_HYSTERESIS_MINOR", "100")),
    # Warn when the forecast says the credit runs out within this many hours.
    "LOW_RUNWAY_HOURS": float(os.environ.get("LOW_RUNWAY_HOURS", "48")),
    # Callables "module.func" taking tenancy= and returning a reason (or "") that
    # freezes automatic disconnection, e.g. an open billing dispute.
    "DISCONNECTION_FREEZE_HOOKS": env_list(
        "DISCONNECTION_FREEZE_HOOKS", "disputes.freeze.open_dispute_freeze"
    ),
    # Tenant disputes (docs/disputes.md): largest attachment, the landlord's
    # response window, the admins' resolution target, and the adjustment above
    # which a second admin must approve.
    "DISPUTE_ATTACHMENT_MAX_BYTES": int(os.environ.get("DISPUTE_ATTACHMENT_MAX_BYTES", "5242880")),
    "DISPUTE_RESPONSE_DAYS": int(os.environ.get("DISPUTE_RESPONSE_DAYS", "5")),
    "DISPUTE_ADMIN_DAYS": int(os.environ.get("DISPUTE_ADMIN_DAYS", "10")),
    # Hours before a dispute's deadline that whoever must act is reminded.
    "DISPUTE_REMINDER_HOURS": int(os.environ.get("DISPUTE_REMINDER_HOURS", "24")),
    "DISPUTE_FOUR_EYES_ABOVE_MINOR": int(os.environ.get("DISPUTE_FOUR_EYES_ABOVE_MINOR", "5000")),
}

# Alerts go by email: SMTP when EMAIL_HOST is set (production), else the console.
if os.environ.get("EMAIL_HOST"):
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": os.environ["EMAIL_HOST"],
                "port": int(os.environ.get("EMAIL_PORT", "587")),
                "username": os.environ.get("EMAIL_HOST_USER", ""),
                "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
                "use_tls": env_bool("EMAIL_USE_TLS", True),
            },
        }
    }
else:
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Submeter <alerts@localhost>")

# A Shelly's secret is part of its address: every logger that prints request
# paths redacts it (config/logs.py), whichever handlers a server attaches.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "config.logs.RedactDeviceSecrets"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "huey": {"level": "WARNING"},
        "uvicorn.error": {"filters": ["redact_secrets"]},
        "uvicorn.access": {"level": "WARNING", "filters": ["redact_secrets"]},
        "django.request": {"filters": ["redact_secrets"]},
        "django.channels.server": {"level": "WARNING", "filters": ["redact_secrets"]},
        # fpdf2 subsets the bill PDF's fonts with fontTools, which logs each table.
        "fontTools": {"level": "WARNING"},
    },
}

# WhiteNoise serves static files with a synchronous iterator; under ASGI Django
# warns about it on every file. Harmless at this scale (a CDN serves them in
# production), so keep the log readable.
warnings.filterwarnings(
    "ignore", message="StreamingHttpResponse must consume synchronous iterators"
)
