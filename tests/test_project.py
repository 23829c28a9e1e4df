"""Project-level checks: health, API schema, deploy checklist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.test import Client

ROOT = Path(__file__).resolve().parents[1]


def test_health_endpoint_reports_the_database(db):
    resp = Client().get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"ok": True, "database": True}


def test_openapi_schema_renders(db):
    resp = Client().get("/api/schema/")
    assert resp.status_code == 200
    body = resp.content.decode()
    assert "/api/v1/units/" in body and "/api/v1/tenancies/{tenancy_id}/" in body


def test_check_deploy_is_clean_on_production_settings():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": "k" * 64 + "-not-a-real-secret-but-long-and-random-enough",
        "ALLOWED_HOSTS": "submeter.example",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://u@127.0.0.1:5432/x"),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "EMAIL_HOST": "smtp.example",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
