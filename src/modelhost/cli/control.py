"""A raw control-plane call: the JSON the server answers, as is.

boto3 covers the SageMaker operations but keeps only the members botocore's model knows
and cannot call modelhost's own `Modelhost.*` operations (schedules) or its JSON routes
(an endpoint's async requests). This sends the same requests, signed with SigV4 when
credentials are at hand (servers with MODELHOST_ACCESS_KEYS check them), and raises
botocore's ClientError for an error answer, so callers handle both kinds of call alike.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.session import get_session

from modelhost import defaults


def call(
    url: str,
    target: str,
    params: dict[str, Any],
    region: str = defaults.REGION,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """One JSON 1.1 operation, e.g. `Modelhost.ListSchedules`."""
    return _send(
        "POST",
        url.rstrip("/") + "/",
        target.rpartition(".")[2],
        region,
        timeout_s,
        orjson.dumps(params),
        {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
    )


def get(
    url: str, path: str, query: str = "", region: str = defaults.REGION, timeout_s: float = 30.0
) -> Any:
    """GET one of modelhost's own JSON routes, e.g. `/endpoints/X/async-requests`."""
    address = f"{url.rstrip('/')}{path}" + (f"?{query}" if query else "")
    return _send("GET", address, path, region, timeout_s)


def _send(
    method: str,
    address: str,
    operation: str,
    region: str,
    timeout_s: float,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    request = AWSRequest(method, address, data=body, headers=headers or {})
    credentials = get_session().get_credentials()
    if credentials is not None:
        SigV4Auth(credentials, "sagemaker", region).add_auth(request)
    prepared = urllib.request.Request(
        address, data=body, method=method, headers=dict(request.headers.items())
    )
    try:
        with urllib.request.urlopen(prepared, timeout=timeout_s) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            problem = orjson.loads(error.read())
        except orjson.JSONDecodeError:
            problem = {}
        code = str(problem.get("__type", f"HTTP{error.code}")).rpartition("#")[2]
        raise ClientError(
            {"Error": {"Code": code, "Message": problem.get("message", str(error))}}, operation
        ) from None
    except urllib.error.URLError:
        raise EndpointConnectionError(endpoint_url=address) from None
