"""Optional SigV4 request authentication with botocore's own signer.

Off by default: a laptop or a trusted network runs modelhost like other local AWS
emulators, accepting any signature. With access keys configured, every API request must
be signed by one of them, exactly as AWS checks it: the server rebuilds the canonical
request from what arrived and signs it with botocore's SigV4Auth, so there is no second
implementation of the algorithm to drift from the clients'.
"""

from __future__ import annotations

import hmac
import os
from datetime import UTC, datetime, timedelta

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from modelhost.errors import SageMakerError

_ALGORITHM = "AWS4-HMAC-SHA256"
_MAX_SKEW = timedelta(minutes=15)  # what AWS allows


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


def access_keys_from_environment() -> dict[str, str]:
    """MODELHOST_ACCESS_KEYS="AKID:SECRET,AKID2:SECRET2"; empty means no checking."""
    keys: dict[str, str] = {}
    for pair in filter(None, os.environ.get("MODELHOST_ACCESS_KEYS", "").split(",")):
        access_key, sep, secret = pair.strip().partition(":")
        if not sep or not access_key or not secret:
            raise ValueError("MODELHOST_ACCESS_KEYS must be AKID:SECRET pairs separated by commas")
        keys[access_key] = secret
    return keys


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


def verify(
    keys: dict[str, str],
    method: str,
    raw_path: bytes,
    query: bytes,
    headers: dict[bytes, bytes],
    body: bytes,
) -> None:
    """Raise AuthenticationError unless the request carries a valid SigV4 signature by
    one of `keys`."""
    header = headers.get(b"authorization")
    if header is None:
        raise AuthenticationError("MissingAuthenticationTokenException",
                                  "Request is missing Authentication Token")
    fields = _parse_authorization(header.decode("latin-1"))
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise AuthenticationError("IncompleteSignatureException",
                                  "Credential must be AKID/date/region/service/aws4_request")
    access_key, day, region, service, _ = scope
    secret = keys.get(access_key)
    if secret is None:
        raise AuthenticationError("UnrecognizedClientException",
                                  "The security token included in the request is invalid.")
    amz_date = headers.get(b"x-amz-date", b"").decode("latin-1")
    try:
        signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise AuthenticationError("IncompleteSignatureException",
                                  "X-Amz-Date is missing or malformed") from None
    if abs(datetime.now(UTC) - signed_at) > _MAX_SKEW or not amz_date.startswith(day):
        raise AuthenticationError("InvalidSignatureException",
                                  "Signature expired or not yet valid: check the clock")

    signed = fields["SignedHeaders"].split(";")
    request = AWSRequest(
        method=method,
        url="http://modelhost" + raw_path.decode("latin-1")
        + (f"?{query.decode('latin-1')}" if query else ""),
        headers={name: headers.get(name.encode(), b"").decode("latin-1") for name in signed},
        data=body,
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise AuthenticationError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
