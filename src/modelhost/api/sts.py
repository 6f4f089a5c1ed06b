"""STS `GetCallerIdentity`: who the signing key is, in this server's account.

STS speaks the AWS query protocol (a form-encoded POST, an XML answer), unlike the JSON
control plane, so it has its own small handler. The identity is the IAM user named by
the access key, as policy denials name it; without access keys configured, any key is
answered the same way.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"


def handle(body: bytes, access_key: str, account_id: str) -> tuple[int, bytes]:
    """The status and XML answer of an STS request."""
    params = parse_qs(body.decode("latin-1"))
    action = params.get("Action", [""])[0]
    request_id = uuid.uuid4()
    if action != "GetCallerIdentity":
        return 400, _error(
            "InvalidAction",
            f"Could not find operation {action[:60]} for version 2011-06-15",
            request_id,
        )
    user = escape(access_key or "modelhost")
    return 200, (
        f'<GetCallerIdentityResponse xmlns="{_NAMESPACE}">'
        "<GetCallerIdentityResult>"
        f"<Arn>arn:aws:iam::{account_id}:user/{user}</Arn>"
        f"<UserId>{user}</UserId>"
        f"<Account>{account_id}</Account>"
        "</GetCallerIdentityResult>"
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        "</GetCallerIdentityResponse>"
    ).encode()


def _error(code: str, message: str, request_id: uuid.UUID) -> bytes:
    return (
        f'<ErrorResponse xmlns="{_NAMESPACE}"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
