"""The console's session cookies: only a right secret makes one, and only an untouched,
unexpired one of this process names a key."""

from __future__ import annotations

import pytest

from modelhost.console.session import COOKIE, Sessions, clear_cookie

KEYS = {"alice": "alice-secret", "bob": "bob-secret"}


def _value(set_cookie: str) -> str:
    return set_cookie.split(";")[0]


def test_a_right_secret_makes_a_session_naming_its_key() -> None:
    sessions = Sessions(KEYS)
    cookie = sessions.sign_in("alice", "alice-secret")
    assert cookie is not None
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert sessions.key_of(_value(cookie)) == "alice"
    assert sessions.key_of(f"other=1; {_value(cookie)}") == "alice"


@pytest.mark.parametrize(
    ("key", "secret"),
    [("alice", "bob-secret"), ("alice", ""), ("nobody", "alice-secret"), ("", "")],
)
def test_a_wrong_key_or_secret_makes_none(key: str, secret: str) -> None:
    assert Sessions(KEYS).sign_in(key, secret) is None


def test_a_tampered_foreign_or_expired_cookie_names_no_key() -> None:
    sessions = Sessions(KEYS)
    value = _value(sessions.sign_in("bob", "bob-secret") or "")
    name, _, signed = value.partition("=")
    encoded, expires, mac = signed.split(".")
    alice = _value(sessions.sign_in("alice", "alice-secret") or "").partition("=")[2]
    assert sessions.key_of(f"{name}={alice.split('.')[0]}.{expires}.{mac}") is None  # other key
    assert sessions.key_of(f"{name}={encoded}.{int(expires) + 60}.{mac}") is None  # later expiry
    assert sessions.key_of(f"{name}={encoded}.{expires}.{mac[:-2]}") is None
    assert sessions.key_of("garbage") is None and sessions.key_of("") is None
    # Another process (a restart) has another secret.
    assert Sessions(KEYS).key_of(value) is None
    expired = Sessions(KEYS, lifetime_s=-1)
    assert expired.key_of(_value(expired.sign_in("bob", "bob-secret") or "")) is None
    # A key no longer among the server's keys has no session.
    keys = dict(KEYS)
    held = Sessions(keys)
    bob = _value(held.sign_in("bob", "bob-secret") or "")
    del keys["bob"]
    assert held.key_of(bob) is None


def test_signing_out_clears_the_cookie() -> None:
    assert clear_cookie().startswith(f"{COOKIE}=;") and "Max-Age=0" in clear_cookie()
