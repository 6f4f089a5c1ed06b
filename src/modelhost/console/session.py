"""The console's sign-in: an access key id and its secret, checked once, then a session
cookie.

A browser cannot SigV4-sign each API call without holding the secret in page script, so
the console asks for the secret once, checks it against the server's access keys, and
hands back a cookie that names the key and its expiry, signed (HMAC-SHA256) with a
secret of this server process. The cookie is HttpOnly (page script never sees it) and
SameSite=Strict (another site's page cannot make the browser send it), and the key it
names is the one every console API call is authorized as, under the same policies as a
signed request. A restart makes a new process secret: sessions end with the process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from http.cookies import SimpleCookie

COOKIE = "modelhost_console"
PATH = "/console"
LIFETIME_S = 12 * 3600


class Sessions:
    """Signs and checks session cookies for the access keys `keys` (id -> secret)."""

    def __init__(self, keys: dict[str, str], lifetime_s: int = LIFETIME_S) -> None:
        self._keys = keys
        self._secret = secrets.token_bytes(32)
        self._lifetime_s = lifetime_s

    def sign_in(self, key_id: str, secret: str) -> str | None:
        """The Set-Cookie value for a correct key id and secret; None otherwise."""
        known = self._keys.get(key_id)
        # Compared in constant time, and compared even for an unknown id, so the answer's
        # timing tells nothing about which ids exist.
        matches = hmac.compare_digest(
            (known if known is not None else secrets.token_hex(16)).encode(), secret.encode()
        )
        if known is None or not matches:
            return None
        expires = int(time.time()) + self._lifetime_s
        value = f"{_b64(key_id.encode())}.{expires}"
        return (
            f"{COOKIE}={value}.{self._mac(value)}; Path={PATH}; Max-Age={self._lifetime_s}; "
            "HttpOnly; SameSite=Strict"
        )

    def key_of(self, cookie_header: str) -> str | None:
        """The access key id of a valid, unexpired session in a Cookie header, else None."""
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(cookie_header)
        except Exception:  # a malformed Cookie header is no session
            return None
        morsel = cookie.get(COOKIE)
        if morsel is None:
            return None
        value, _, mac = morsel.value.rpartition(".")
        encoded, _, expires = value.partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(value).encode()):
            return None
        if not expires.isdigit() or int(expires) < time.time():
            return None
        try:
            key_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except ValueError:
            return None
        return key_id if key_id in self._keys else None

    def _mac(self, value: str) -> str:
        digest = hmac.new(self._secret, value.encode(), hashlib.sha256).digest()
        return _b64(digest)


def clear_cookie() -> str:
    """The Set-Cookie value that ends a session."""
    return f"{COOKIE}=; Path={PATH}; Max-Age=0; HttpOnly; SameSite=Strict"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
