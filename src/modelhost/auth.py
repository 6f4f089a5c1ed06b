"""Optional SigV4 request authentication with botocore's own signer.

Off by default: a laptop or a trusted network runs modelhost like other local AWS
emulators, accepting any signature. With access keys configured, every API request must
be signed by one of them, checked as AWS checks it: the server rebuilds the canonical
request from what arrived and signs it with botocore's SigV4Auth, so there is no second
implementation of the algorithm to drift from the clients'.

A signature only proves something about the parts of the request it covers, so the
check also insists on what AWS insists on: the payload hash is the one of the bytes that
arrived (never the client's `X-Amz-Content-SHA256` claim: botocore signs the body of
every SageMaker, Application Auto Scaling and CloudWatch operation, none of them takes
UNSIGNED-PAYLOAD), every header an operation reads is among the signed ones, and the
credential scope names this server's region, the service the route belongs to and the
day of X-Amz-Date, which must be within 15 minutes of the server's clock.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from modelhost.errors import SageMakerError

_ALGORITHM = "AWS4-HMAC-SHA256"
_MAX_SKEW = timedelta(minutes=15)  # what AWS allows
# Headers botocore never signs (SIGNED_HEADERS_BLACKLIST): a proxy may add or change them.
_UNSIGNABLE = frozenset({b"expect", b"transfer-encoding", b"user-agent", b"x-amzn-trace-id"})
_CONTENT_SHA256 = b"x-amz-content-sha256"


class AuthenticationError(SageMakerError):
    status = 403

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# The header the server's own load tests carry its per-process secret in
# (Settings.internal_token): a load generator cannot sign each request.
INTERNAL_TOKEN_HEADER = "x-modelhost-internal-token"


def is_internal(headers: dict[bytes, bytes], token: str) -> bool:
    """Whether the request carries this server's own secret."""
    sent = headers.get(INTERNAL_TOKEN_HEADER.encode())
    return sent is not None and hmac.compare_digest(sent, token.encode())


def has_bearer_token(headers: dict[bytes, bytes], token: str) -> bool:
    """Whether `Authorization: Bearer <token>` carries `token` (a Prometheus scraper's
    credential for /metrics, which it cannot SigV4-sign)."""
    sent = headers.get(b"authorization", b"")
    scheme, _, value = sent.partition(b" ")
    return (
        bool(token)
        and scheme.lower() == b"bearer"
        and hmac.compare_digest(value.strip(), token.encode())
    )


def access_keys_from_environment() -> dict[str, str]:
    """MODELHOST_ACCESS_KEYS="AKID:SECRET,AKID2:SECRET2"; empty means no checking."""
    keys: dict[str, str] = {}
    for pair in filter(None, os.environ.get("MODELHOST_ACCESS_KEYS", "").split(",")):
        access_key, sep, secret = pair.strip().partition(":")
        if not sep or not access_key or not secret:
            raise ValueError("MODELHOST_ACCESS_KEYS must be AKID:SECRET pairs separated by commas")
        keys[access_key] = secret
    return keys


@dataclass(frozen=True)
class SignedRequest:
    """What arrived, as the signature check needs it. `payload_sha256` is the hex SHA-256
    of the body bytes received (hashed while they were read)."""

    method: str
    raw_path: bytes
    query: bytes
    headers: dict[bytes, bytes]
    payload_sha256: str


def _parse_authorization(header: str) -> dict[str, str]:
    algorithm, _, rest = header.partition(" ")
    if algorithm != _ALGORITHM:
        raise AuthenticationError(
            "IncompleteSignatureException", f"Unsupported signature algorithm {algorithm[:40]!r}"
        )
    fields = {}
    for part in rest.split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        raise AuthenticationError(
            "IncompleteSignatureException",
            "Authorization header needs Credential, SignedHeaders and Signature",
        )
    return fields


def _must_be_signed(headers: dict[bytes, bytes]) -> list[bytes]:
    """The headers present that an operation reads: host, x-amz-date, content-type and
    every x-amz-* / x-amzn-* one (X-Amz-Target picks the operation, X-Amzn-SageMaker-*
    pick the variant, the session, the custom attributes...). AWS requires all of them
    signed; botocore signs all of them."""
    required = [b"host", b"x-amz-date"]
    for name in headers:
        if name in _UNSIGNABLE or name in required:
            continue
        if name == b"content-type" or name.startswith((b"x-amz-", b"x-amzn-")):
            required.append(name)
    return required


def _check_time(amz_date: str, day: str, now: datetime) -> None:
    try:
        signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise AuthenticationError(
            "IncompleteSignatureException", "X-Amz-Date is missing or malformed"
        ) from None
    if day != amz_date[:8]:
        raise AuthenticationError(
            "InvalidSignatureException",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{day[:8]}' != '{amz_date[:8]}', from '{amz_date}'.",
        )

    def stamp(moment: datetime) -> str:
        return moment.strftime(SIGV4_TIMESTAMP)

    if signed_at < now - _MAX_SKEW:
        raise AuthenticationError(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {stamp(now - _MAX_SKEW)} "
            f"({stamp(now)} - 15 min.)",
        )
    if signed_at > now + _MAX_SKEW:
        raise AuthenticationError(
            "InvalidSignatureException",
            f"Signature not yet current: {amz_date} is still later than "
            f"{stamp(now + _MAX_SKEW)} ({stamp(now)} + 15 min.)",
        )


class _ReceivedPayload(SigV4Auth):
    """botocore's signer with the payload hash of the bytes received: the body is hashed
    once, as it arrives, instead of being kept and hashed again here."""

    def __init__(
        self, credentials: Credentials, service: str, region: str, payload_sha256: str
    ) -> None:
        super().__init__(credentials, service, region)
        self._payload_sha256 = payload_sha256

    def payload(self, request: AWSRequest) -> str:
        return self._payload_sha256


def verify(
    keys: dict[str, str],
    request: SignedRequest,
    service: str,
    region: str,
    now: datetime | None = None,
) -> str:
    """The access key that signed `request` for `service` in `region`; raises
    AuthenticationError unless one of `keys` did, over everything the request carries."""
    headers = request.headers
    header = headers.get(b"authorization")
    if header is None:
        raise AuthenticationError(
            "MissingAuthenticationTokenException", "Request is missing Authentication Token"
        )
    fields = _parse_authorization(header.decode("latin-1"))
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise AuthenticationError(
            "IncompleteSignatureException",
            "Credential must be AKID/date/region/service/aws4_request",
        )
    access_key, day, signed_region, signed_service, _ = scope
    secret = keys.get(access_key)
    if secret is None:
        raise AuthenticationError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if signed_region != region:
        raise AuthenticationError(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{signed_region[:40]}'. ",
        )
    if signed_service != service:
        raise AuthenticationError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'. ",
        )
    _check_time(headers.get(b"x-amz-date", b"").decode("latin-1"), day, now or datetime.now(UTC))

    signed = fields["SignedHeaders"].split(";")
    for name in _must_be_signed(headers):
        if name.decode("latin-1") not in signed:
            shown = "'Host' or ':authority'" if name == b"host" else f"'{name.decode('latin-1')}'"
            raise AuthenticationError(
                "IncompleteSignatureException",
                f"{shown} must be a 'SignedHeader' in the AWS Authorization.",
            )
    claimed = headers.get(_CONTENT_SHA256)
    if claimed is not None and claimed.decode("latin-1") != request.payload_sha256:
        raise AuthenticationError(
            "InvalidSignatureException",
            "The provided 'x-amz-content-sha256' header does not match what was computed: "
            f"{service} takes signed payloads only.",
        )

    aws_request = AWSRequest(
        method=request.method,
        url="http://modelhost"
        + request.raw_path.decode("latin-1")
        + (f"?{request.query.decode('latin-1')}" if request.query else ""),
        headers={name: headers.get(name.encode(), b"").decode("latin-1") for name in signed},
    )
    aws_request.context["timestamp"] = headers[b"x-amz-date"].decode("latin-1")
    signer = _ReceivedPayload(
        Credentials(access_key, secret), service, region, request.payload_sha256
    )
    canonical = signer.canonical_request(aws_request)
    expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise AuthenticationError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.",
        )
    return access_key
