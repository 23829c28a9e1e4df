from __future__ import annotations

from django.test import Client
from django.urls import reverse


def _attempt(client: Client, username: str, password: str, addr: str = "10.0.0.1"):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=addr
    )


def test_repeated_failures_lock_the_account_out_then_nothing_is_checked(personas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "LOGIN_MAX_FAILURES": 3}
    client = Client()
    for _ in range(3):
        assert _attempt(client, "tenant_a1", "wrong").status_code == 200
    # Even the right password is refused while locked out, and says why.
    resp = _attempt(client, "tenant_a1", "pw")
    assert resp.status_code == 429
    assert "Too many failed attempts" in resp.content.decode()
    assert "_auth_user_id" not in client.session
    # Another account from another address is unaffected.
    assert _attempt(Client(), "tenant_a2", "pw", addr="10.0.0.2").status_code == 302


def test_one_address_cannot_spray_many_accounts(personas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "LOGIN_MAX_FAILURES": 3}
    for name in ("x1", "x2", "x3"):
        _attempt(Client(), name, "wrong", addr="10.9.9.9")
    assert _attempt(Client(), "tenant_a1", "pw", addr="10.9.9.9").status_code == 429


def test_success_resets_the_account_counter(personas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "LOGIN_MAX_FAILURES": 3}
    client = Client()
    _attempt(client, "tenant_a1", "wrong", addr="10.0.0.5")
    _attempt(client, "tenant_a1", "wrong", addr="10.0.0.6")
    assert _attempt(client, "tenant_a1", "pw", addr="10.0.0.7").status_code == 302
    for addr in ("10.0.0.8", "10.0.0.9"):
        assert _attempt(Client(), "tenant_a1", "wrong", addr=addr).status_code == 200
    assert _attempt(Client(), "tenant_a1", "pw", addr="10.0.0.10").status_code == 302


def test_client_address_trusts_only_our_proxies(settings):
    from config.ratelimit import client_address

    meta = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7"}
    settings.SUBMETER = {**settings.SUBMETER, "TRUSTED_PROXIES": 0}
    assert client_address(meta) == "10.0.0.1"
    settings.SUBMETER = {**settings.SUBMETER, "TRUSTED_PROXIES": 1}
    assert client_address(meta) == "203.0.113.7"  # the spoofable left part is ignored
    assert client_address({"REMOTE_ADDR": "10.0.0.1"}) == "10.0.0.1"


def _admin_attempt(client: Client, username: str, password: str, addr: str = "10.0.0.1"):
    return client.post(
        "/admin/login/", {"username": username, "password": password}, REMOTE_ADDR=addr
    )


def test_the_admin_login_is_limited_too(personas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "LOGIN_MAX_FAILURES": 3}
    client = Client()
    for _ in range(3):
        assert _admin_attempt(client, "admin", "wrong").status_code == 200
    resp = _admin_attempt(client, "admin", "pw")
    assert resp.status_code == 429
    assert "Too many failed attempts" in resp.content.decode()
    assert "_auth_user_id" not in client.session
    # The limit is per account and address: the admin from elsewhere still signs in.
    resp = _admin_attempt(Client(), "tenant_a1", "pw", addr="10.0.0.2")
    assert resp.status_code == 200  # not staff: refused, but not locked out
    resp = _admin_attempt(Client(), "admin", "pw", addr="10.0.0.3")
    assert resp.status_code == 429  # the account itself is locked
    resp = _admin_attempt(Client(), "someone", "pw", addr="10.0.0.4")
    assert resp.status_code == 200


def test_admin_and_site_logins_share_one_failure_count(personas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "LOGIN_MAX_FAILURES": 2}
    _attempt(Client(), "admin", "wrong", addr="10.1.0.1")
    _admin_attempt(Client(), "admin", "wrong", addr="10.1.0.2")
    assert _admin_attempt(Client(), "admin", "pw", addr="10.1.0.3").status_code == 429
    assert _attempt(Client(), "admin", "pw", addr="10.1.0.4").status_code == 429


def test_the_admin_login_still_signs_staff_in(personas):
    client = Client()
    resp = _admin_attempt(client, "admin", "pw")
    assert resp.status_code == 302 and resp["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/login/")["Location"] == "/admin/"
    # Pages of the admin send a signed-out visitor to the limited sign-in page.
    assert Client().get("/admin/")["Location"].startswith("/admin/login/?next=/admin/")
