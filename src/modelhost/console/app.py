"""The web console's routes under `/console`: its pages, its sign-in, and one JSON route
that runs read-only control-plane operations for the page's script.

The pages are static files shipped in the package (no build step); their script asks
`POST /console/api/<X-Amz-Target>` with the operation's JSON body, which runs the very
function `POST /` with that target runs (`api.handle`), so the console shows exactly what
boto3 sees. Only reading operations (Describe*, List*, Get*, Search) pass: the console
changes nothing. Two of modelhost's own reading routes, which SageMaker's API has no
operation for (an asynchronous endpoint's requests, a recommendation job's load curves),
are offered the same way under `Modelhost.*` targets (:class:`Read`). With access keys
configured, every route but the sign-in page needs a session (see session.py), and each
API call is authorized as the session's key under the same policies as a signed request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import orjson

from modelhost import access, api
from modelhost.config import Settings
from modelhost.console.session import Sessions, clear_cookie
from modelhost.console.throttle import SignInThrottle
from modelhost.errors import RequestTooLarge, SageMakerError, UnknownOperation, ValidationError

PREFIX = "/console"
_API = f"{PREFIX}/api/"
_STATIC = f"{PREFIX}/static/"
_MAX_BODY = 1024 * 1024
_READING = ("Describe", "List", "Get", "Search")
# What the sign-in page itself needs before there is a session.
_PUBLIC_STATIC = frozenset({"console.css"})
# No remote or inline script, no framing, requests to this origin only.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".LICENSE": b"text/plain; charset=utf-8",
}
_ERROR_MARK = b"<!--error-->"
_JSON = (b"content-type", b"application/json")

Scope = dict[str, Any]
ReadBody = Callable[[Any, int], Awaitable[bytes | None]]


class SignInRequired(SageMakerError):
    code = "MissingAuthenticationTokenException"
    status = 401


@dataclass(frozen=True)
class Read:
    """One of the server's own reading routes, offered to the console's script: the JSON
    body names one resource (`member`), `access` says what a policy must allow, `fetch`
    gives the answer (or raises a SageMakerError)."""

    member: str
    access: Callable[[str], access.Access]
    fetch: Callable[[str], Awaitable[Any]]


class Console:
    """The `/console` routes of one server; `read_body(receive, limit)` is the server's
    body reader (None past `limit`); `reads` the server's own reading routes by their
    `Modelhost.*` target."""

    def __init__(
        self,
        settings: Settings,
        context: api.Context,
        arns: access.Arns,
        read_body: ReadBody,
        reads: Mapping[str, Read] | None = None,
    ) -> None:
        self._settings = settings
        self._reads = dict(reads or {})
        self._context = context
        self._arns = arns
        self._read_body = read_body
        self._sessions = Sessions(settings.access_keys) if settings.access_keys else None
        self._throttle = SignInThrottle()
        self._files = _static_files()
        if self._sessions is None:  # nobody signs in, so nobody signs out
            page, kind = self._files["index.html"]
            before, _, rest = page.partition(b"<!--sign-out-->")
            self._files["index.html"] = (before + rest.partition(b"<!--/sign-out-->")[2], kind)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        headers = dict(scope["headers"])
        key = self._session_key(headers)
        signed_in = self._sessions is None or key is not None
        if path in (PREFIX, f"{PREFIX}/index.html"):
            await _redirect(send, f"{PREFIX}/")
        elif path == f"{PREFIX}/login" and method == "POST":
            await self._sign_in(scope, receive, send, headers)
        elif path == f"{PREFIX}/login" and method in ("GET", "HEAD"):
            if self._sessions is None or signed_in:
                await _redirect(send, f"{PREFIX}/")
            else:
                await _page(send, 200, self._files["login.html"][0])
        elif path == f"{PREFIX}/logout" and method == "POST":
            await _redirect(send, f"{PREFIX}/login", [(b"set-cookie", clear_cookie().encode())])
        elif path == f"{PREFIX}/" and method in ("GET", "HEAD"):
            if signed_in:
                await _page(send, 200, self._files["index.html"][0])
            else:
                await _redirect(send, f"{PREFIX}/login")
        elif path.startswith(_STATIC) and method in ("GET", "HEAD"):
            name = path[len(_STATIC) :]
            if name not in self._files or name.endswith(".html"):
                await _error(send, UnknownOperation(f"No console file {name}"), 404)
            elif not signed_in and name not in _PUBLIC_STATIC:
                await _error(send, SignInRequired("Sign in to the console first."))
            else:
                body, kind = self._files[name]
                await _respond(send, 200, body, [(b"content-type", kind)])
        elif path.startswith(_API) and method == "POST":
            await self._api(scope, receive, send, headers, path[len(_API) :], key)
        else:
            await _error(send, UnknownOperation(f"No console route for {method} {path}"), 404)

    def _session_key(self, headers: dict[bytes, bytes]) -> str | None:
        if self._sessions is None:
            return None
        return self._sessions.key_of(headers.get(b"cookie", b"").decode("latin-1"))

    async def _sign_in(
        self, scope: Scope, receive: Any, send: Any, headers: dict[bytes, bytes]
    ) -> None:
        """The sign-in form: a session cookie for a right key id and secret, the form
        again (401) for a wrong one, and (429, with Retry-After) while too many wrong ones
        for the key id or from the client's address lock sign-ins out (throttle.py)."""
        body = await self._read_body(receive, 64 * 1024)
        if self._sessions is None:
            await _redirect(send, f"{PREFIX}/")
            return
        if body is None or not _same_origin(headers):
            await _page(send, 400, self._login_page("The sign-in request was refused."))
            return
        form = parse_qs(body.decode("utf-8", "replace"))
        key_id = form.get("access_key_id", [""])[0].strip()
        client = scope.get("client")
        address = client[0] if client else ""
        wait_s = self._throttle.wait_s(key_id, address)
        if wait_s:
            message = (
                "Too many failed sign-ins for this access key or from this address; "
                f"try again in {wait_s} s."
            )
            await _page(
                send, 429, self._login_page(message), [(b"retry-after", str(wait_s).encode())]
            )
            return
        cookie = self._sessions.sign_in(key_id, form.get("secret_access_key", [""])[0])
        if cookie is None:
            self._throttle.failed(key_id, address)
            await _page(send, 401, self._login_page("Wrong access key id or secret."))
            return
        self._throttle.succeeded(key_id)
        if scope.get("scheme") == "https":
            cookie += "; Secure"
        await _redirect(send, f"{PREFIX}/", [(b"set-cookie", cookie.encode())])

    def _login_page(self, message: str) -> bytes:
        escaped = message.replace("&", "&amp;").replace("<", "&lt;").encode()
        return self._files["login.html"][0].replace(
            _ERROR_MARK, b'<p class="error" role="alert">' + escaped + b"</p>"
        )

    async def _api(
        self,
        scope: Scope,
        receive: Any,
        send: Any,
        headers: dict[bytes, bytes],
        target: str,
        key: str | None,
    ) -> None:
        """One reading control-plane operation, as `POST /` with `X-Amz-Target: target`
        answers it."""
        try:
            body = await self._read_body(receive, _MAX_BODY)
            if self._sessions is not None and key is None:
                raise SignInRequired("Sign in to the console first.")
            # A custom header no form can send and no other origin may (without a CORS
            # answer, which this route never gives): a cross-site request cannot get here.
            if headers.get(b"x-modelhost-console") != b"1" or not _same_origin(headers):
                raise ValidationError("Console API calls come from the console's own pages.")
            if body is None:
                raise RequestTooLarge("Console API requests are small JSON documents.")
            operation = target.partition(".")[2]
            if not operation.startswith(_READING):
                raise ValidationError(
                    f"The console only reads: {target} is not a Describe, List, Get or "
                    "Search operation."
                )
            read = self._reads.get(target)
            if read is not None:
                answer = await self._own_read(read, body, key)
                await _respond(send, 200, orjson.dumps(answer), [_JSON])
                return
            policies = self._settings.policies
            if key is not None and policies is not None:
                try:
                    params = orjson.loads(body) if body.strip() else {}
                except orjson.JSONDecodeError:
                    params = None
                asked = access.control(target, params, self._arns)
                policies.authorize(key, asked.action, asked.resources)
        except SageMakerError as error:
            await _error(send, error)
            return
        status, payload = await asyncio.to_thread(api.handle, self._context, target, body)
        await _respond(send, status, payload, [_JSON])

    async def _own_read(self, read: Read, body: bytes, key: str | None) -> Any:
        """One of the server's own reading routes, for the resource the body names."""
        try:
            params = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError:
            raise ValidationError("The request body is not JSON.") from None
        name = params.get(read.member) if isinstance(params, dict) else None
        if not isinstance(name, str) or not name:
            raise ValidationError(f"{read.member} is required: the name of one resource.")
        extra = sorted(set(params) - {read.member})
        if extra:
            raise ValidationError(f"Unknown parameter(s): {', '.join(extra)}.")
        policies = self._settings.policies
        if key is not None and policies is not None:
            asked = read.access(name)
            policies.authorize(key, asked.action, asked.resources)
        return await read.fetch(name)


def _static_files() -> dict[str, tuple[bytes, bytes]]:
    """Every shipped file of the console by its name under /console/static/ (read once:
    they are small and never change while the server runs)."""
    files: dict[str, tuple[bytes, bytes]] = {}
    root = resources.files("modelhost.console") / "static"

    def walk(folder: Any, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
                continue
            suffix = "." + entry.name.rpartition(".")[2]
            if suffix in _TYPES:
                files[prefix + entry.name] = (entry.read_bytes(), _TYPES[suffix])

    walk(root, "")
    return files


def _same_origin(headers: dict[bytes, bytes]) -> bool:
    """No Origin header (a same-origin GET, or a client that is no browser), or one naming
    the host the request was sent to."""
    origin = headers.get(b"origin")
    if origin is None:
        return True
    host = headers.get(b"host", b"")
    return origin.partition(b"://")[2] == host


async def _redirect(
    send: Any, location: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _respond(send, 303, b"", [(b"location", location.encode()), *(extra or [])])


async def _page(
    send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _respond(send, status, body, [(b"content-type", _TYPES[".html"]), *(extra or [])])


async def _error(send: Any, error: SageMakerError, status: int | None = None) -> None:
    await _respond(
        send,
        status or error.status,
        orjson.dumps(error.body()),
        [(b"content-type", b"application/json"), (b"x-amzn-errortype", error.code.encode())],
    )


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [
        *headers,
        (b"content-security-policy", _CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        # Not no-referrer: with it, chromium sends `Origin: null` on the sign-in form's POST.
        (b"referrer-policy", b"same-origin"),
        (b"cache-control", b"no-store"),
        (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
