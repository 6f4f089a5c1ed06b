"""S3 requests on the server's own port, passed through to the supervised rclone.

Which service a request is for is what its signature says: the credential scope
(`AKID/day/region/SERVICE/aws4_request`) in the Authorization header or in a presigned
URL's `X-Amz-Credential`. The server answers what is signed for `s3` here and everything
else itself; an unsigned request that matches none of the server's own routes is S3's
too (an anonymous GET of an object, say).

With access keys configured, rclone checks each signature against the same keys; this
side first refuses what the rest of the server would (an unknown key, another region, an
unsigned request) and asks the policy about the S3 action, so S3 is held to the same
rules as the control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from modelhost.auth import AuthenticationError
from modelhost.errors import SageMakerError
from modelhost.policy import AccessDenied, Policies

log = logging.getLogger(__name__)

Scope = dict[str, Any]
# Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the request's.
_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
    }
)
_CHUNK = 1024 * 1024
# rclone allows any origin (CORS `*`); the server's other routes send no CORS headers, so
# a web page elsewhere cannot read these answers either.


def signed_service(scope: Scope) -> str | None:
    """The service a request's SigV4 credential scope names; `s3` for S3's own legacy
    signatures (SigV2 header or query); None when it is unsigned."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            if value.startswith(b"AWS "):
                return "s3"
            _, found, rest = value.partition(b"Credential=")
            if found:
                parts = rest.split(b",", 1)[0].split(b"/")
                return parts[3].decode("latin-1") if len(parts) == 5 else ""
            return ""
    query = scope.get("query_string", b"")
    if b"X-Amz-Credential=" in query:
        credential = parse_qs(query.decode("latin-1")).get("X-Amz-Credential", [""])[0]
        parts = credential.split("/")
        return parts[3] if len(parts) == 5 else ""
    if b"AWSAccessKeyId=" in query:
        return "s3"
    return None


def _credential(scope: Scope) -> tuple[str, str] | None:
    """(access key, region) of a SigV4-signed request."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            _, _, rest = value.decode("latin-1").partition("Credential=")
            parts = rest.split(",", 1)[0].split("/")
            return (parts[0], parts[2]) if len(parts) == 5 else None
    credential = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(
        "X-Amz-Credential", [""]
    )[0]
    parts = credential.split("/")
    return (parts[0], parts[2]) if len(parts) == 5 else None


def s3_action(method: str, path: str, query: str) -> tuple[str, str]:
    """The IAM action and resource ARN of an S3 request (path-style addressing)."""
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    params = parse_qs(query, keep_blank_values=True)
    if not bucket:
        return "s3:ListAllMyBuckets", "*"
    if not key:
        resource = f"arn:aws:s3:::{bucket}"
        if method == "POST" and "delete" in params:
            return "s3:DeleteObject", f"{resource}/*"
        if "uploads" in params:
            return "s3:ListBucketMultipartUploads", resource
        action = {"PUT": "s3:CreateBucket", "DELETE": "s3:DeleteBucket"}.get(
            method, "s3:ListBucket"
        )
        return action, resource
    resource = f"arn:aws:s3:::{bucket}/{key}"
    if method in ("GET", "HEAD"):
        return ("s3:ListMultipartUploadParts" if "uploadId" in params else "s3:GetObject"), resource
    if method == "DELETE":
        return ("s3:AbortMultipartUpload" if "uploadId" in params else "s3:DeleteObject"), resource
    return "s3:PutObject", resource


class S3Proxy:
    """Streams S3 requests to rclone at `upstream` and its answers back, bodies of any
    size in 1 MiB pieces."""

    def __init__(
        self,
        upstream: str,
        access_keys: dict[str, str],
        region: str,
        policies: Policies | None,
        ready: Any,
        record_content_type: Callable[[str, str], None] | None = None,
    ) -> None:
        self.upstream = upstream
        self.access_keys = access_keys
        self.region = region
        self.policies = policies
        self._ready = ready
        self._record_content_type = record_content_type
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _check(self, scope: Scope) -> None:
        if not self.access_keys:
            return
        found = _credential(scope)
        if found is None:
            raise AuthenticationError("AccessDenied", "Anonymous access is not allowed.")
        key, region = found
        if key not in self.access_keys:
            raise AuthenticationError(
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        if region != self.region:
            raise AuthenticationError(
                "AuthorizationHeaderMalformed",
                f"The authorization header is malformed; the region '{region[:40]}' is wrong; "
                f"expecting '{self.region}'",
            )
        if self.policies is not None:
            action, resource = s3_action(
                scope["method"], scope["path"], scope["query_string"].decode("latin-1")
            )
            self.policies.authorize(key, action, [resource])

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            self._check(scope)
        except AccessDenied as error:
            await _error(send, 403, "AccessDenied", str(error))
            return
        except SageMakerError as error:
            await _error(send, error.status, error.code, str(error))
            return
        if not await self._ready():
            await _error(
                send, 503, "ServiceUnavailable", "The embedded S3 service is not running yet."
            )
            return
        raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope["query_string"].decode("latin-1")
        try:
            if not raw.startswith("/"):  # `OPTIONS *`, say
                raise ValueError(raw)
            url = URL(self.upstream + raw + (f"?{query}" if query else ""), encoded=True)
        except ValueError:
            await _error(send, 400, "InvalidURI", "Couldn't parse the specified URI.")
            return
        headers = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in _HOP
        ]
        has_body = any(
            (k == b"content-length" and v != b"0") or k == b"transfer-encoding"
            for k, v in scope["headers"]
        )
        started = False
        try:
            async with self._client().request(
                scope["method"],
                url,
                headers=CIMultiDict(headers),
                data=_body(receive) if has_body else None,
                allow_redirects=False,
            ) as answer:
                out = [
                    (k.lower(), v)
                    for k, v in answer.raw_headers
                    if k.lower() not in _HOP and not k.lower().startswith(b"access-control-")
                ]
                status = answer.status
                if status == 200 and any(k == b"content-range" for k, _ in out):
                    # rclone answers a ranged GET with 200 and the whole object's
                    # checksum; S3 with 206 and none (a client would check the part
                    # against it and fail).
                    status = 206
                    out = [(k, v) for k, v in out if not k.startswith(b"x-amz-checksum-")]
                if status == 200:
                    # Before the client hears the PUT succeeded: it may use the object at
                    # once (predict_async uploads, then invokes with the object's type).
                    await self._uploaded(scope)
                await send({"type": "http.response.start", "status": status, "headers": out})
                started = True
                async for chunk in answer.content.iter_chunked(_CHUNK):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("S3 request to rclone failed: %s", exc)
            if started:
                raise  # the answer is under way: the client sees it cut short
            await _error(send, 503, "ServiceUnavailable", "The embedded S3 service did not answer.")

    async def _uploaded(self, scope: Scope) -> None:
        """After a PutObject: keep the object's Content-Type where the rest of the server
        reads it (rclone keeps it only in memory)."""
        if self._record_content_type is None or scope["method"] != "PUT":
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type")
        query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        if not content_type or "uploadId" in query or b"x-amz-copy-source" in headers:
            return
        bucket, _, key = unquote(scope["path"]).lstrip("/").partition("/")
        if bucket and key and not query:
            with contextlib.suppress(ValueError):
                await asyncio.to_thread(
                    self._record_content_type,
                    f"s3://{bucket}/{key}",
                    content_type.decode("latin-1"),
                )


async def _body(receive: Any) -> Any:
    """The request body as it arrives, for aiohttp to send on."""
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def _error(send: Any, status: int, code: str, message: str) -> None:
    """An error as S3 sends one: an XML document."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{_xml_escape(code)}</Code><Message>{_xml_escape(message)}</Message></Error>"
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/xml"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
