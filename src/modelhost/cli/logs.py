"""`modelhost endpoints logs NAME`: an endpoint's instance logs, read through the
CloudWatch Logs API the server serves (group `/aws/sagemaker/Endpoints/NAME`, one stream
per instance, `VARIANT/INSTANCE-ID`), so the command works against any server it can
reach, signed like every other call, and reads exactly what `aws logs tail` would.

Following (`-f`) polls FilterLogEvents from the newest timestamp seen; events at that
timestamp are remembered by id so none is printed twice and none is skipped.
"""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

import typer

from modelhost.cli import console

ENDPOINTS_GROUP = "/aws/sagemaker/Endpoints/"
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
POLL_S = 1.0


def since_ms(since: str | None, now: float | None = None) -> int | None:
    """`--since`: a duration back from now (`30s`, `10m`, `2h`, `1d`, `1w`) or an ISO 8601
    time (UTC unless it says otherwise), as CloudWatch's milliseconds since the epoch."""
    if not since:
        return None
    if match := _DURATION.match(since.strip()):
        back = int(match.group(1)) * _SECONDS[match.group(2)]
        return int(((time.time() if now is None else now) - back) * 1000)
    try:
        moment = datetime.fromisoformat(since.strip())
    except ValueError:
        console.error(
            f"--since {since!r} is neither a duration (30s, 10m, 2h, 1d, 1w) nor an "
            "ISO 8601 time (2026-01-31T12:00:00)"
        )
        raise typer.Exit(2) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _line(event: dict[str, Any]) -> str:
    stamp = datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
    when = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
    return f"{when} {event['logStreamName']} {event['message']}\n"


def _events(logs: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of one FilterLogEvents query."""
    events: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = logs.filter_log_events(**params, **({"nextToken": token} if token else {}))
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return events


def show(logs: Any, endpoint: str, variant: str | None, start: int | None, follow: bool) -> None:
    """Print the endpoint's log events, oldest first; with `follow`, keep printing new
    ones until interrupted."""
    from botocore.exceptions import ClientError

    params: dict[str, Any] = {"logGroupName": ENDPOINTS_GROUP + endpoint}
    if variant:
        params["logStreamNamePrefix"] = f"{variant}/"
    newest = start
    seen: set[tuple[str, str]] = set()  # the events printed at `newest`
    try:
        while True:
            try:
                events = _events(logs, params | ({"startTime": newest} if newest else {}))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                if not follow:
                    console.error(f"endpoint {endpoint} has no instance log (yet)")
                    raise typer.Exit(1) from None
                events = []
            for event in events:
                key = (event["logStreamName"], event["eventId"])
                if key in seen:
                    continue
                sys.stdout.write(_line(event))
                if newest is None or event["timestamp"] > newest:
                    newest, seen = event["timestamp"], set()
                seen.add(key)
            sys.stdout.flush()
            if not follow:
                return
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        return
