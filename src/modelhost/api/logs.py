"""CloudWatch Logs over the instances' own log files: what SageMaker sends to CloudWatch,
read where modelhost writes it (`<data-dir>/logs/<name>/<variant>-<n>.log`).

The names are SageMaker's: an endpoint's instances log to the group
`/aws/sagemaker/Endpoints/<endpoint>`, stream `<variant>/<instance-id>`; a transform job's
to `/aws/sagemaker/TransformJobs`, stream `<job>/<instance-id>`. Each line is an event.
A file carries no time per line, so each line gets one when it is first read (the log
file's modification time then), kept in a small `.times` file beside the log so that a
line's timestamp never changes between calls: the sagemaker SDK and `aws logs tail`
resume from a timestamp and a count of events seen at it.

Paging is AWS's: GetLogEvents' forward/backward tokens name a line, and stay the same
at the end of a stream (so a follower polls with the token it got); DescribeLogGroups,
DescribeLogStreams and FilterLogEvents give a nextToken only while more is left.
"""

from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from modelhost.api.context import Context
from modelhost.domain import kinds
from modelhost.errors import ResourceNotFound, SageMakerError

ENDPOINTS_PREFIX = "/aws/sagemaker/Endpoints/"
TRANSFORM_GROUP = "/aws/sagemaker/TransformJobs"
_SUFFIX = ".log"
_TIMES_SUFFIX = ".times"
_DEFAULT_EVENTS = 10_000
_MAX_EVENT_BYTES = 1024 * 1024  # what one GetLogEvents / FilterLogEvents page may carry
_MAX_LISTED = 50
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


class InvalidParameter(SageMakerError):
    """CloudWatch Logs' answer to a parameter it cannot take."""

    code = "InvalidParameterException"
    status = 400


@dataclass(frozen=True)
class Stream:
    group: str
    name: str
    path: Path


def _lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def read_events(path: Path) -> list[tuple[int, str]]:
    """The complete lines of a log file with their timestamps (ms), oldest first; a last
    line still being written is left for the next read."""
    with _lock(path):
        try:
            data = path.read_bytes()
            mtime_ms = int(os.stat(path).st_mtime * 1000)
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")[:-1]
        times_path = path.with_name(path.name + _TIMES_SUFFIX)
        runs: list[tuple[int, int]] = []
        if times_path.exists():
            for entry in times_path.read_text().split():
                count, _, seen = entry.partition(":")
                runs.append((int(count), int(seen)))
        known = sum(count for count, _ in runs)
        if len(lines) > known:
            # Never earlier than a line already timestamped: the clock may not go back.
            stamp = max(mtime_ms, runs[-1][1] if runs else 0)
            runs.append((len(lines) - known, stamp))
            with times_path.open("a") as out:
                out.write(f"{len(lines) - known}:{stamp}\n")
    stamps = [stamp for count, stamp in runs for _ in range(count)]
    return [
        (stamp, line.decode("utf-8", "replace").rstrip("\r"))
        for stamp, line in zip(stamps, lines, strict=False)
    ]


def _streams(ctx: Context, group: str) -> list[Stream]:
    """The streams of a group, by name; ResourceNotFound when the group has none."""
    root = ctx.settings.logs_dir
    if group == TRANSFORM_GROUP:
        folders = [
            d for d in _folders(root) if ctx.store.get(kinds.TRANSFORM_JOB, d.name) is not None
        ]
    elif group.startswith(ENDPOINTS_PREFIX):
        name = group[len(ENDPOINTS_PREFIX) :]
        folder = root / name
        known = "/" not in name and name not in ("", ".", "..") and folder.is_dir()
        if not known or ctx.store.get(kinds.TRANSFORM_JOB, name) is not None:
            folders = []
        else:
            folders = [folder]
    else:
        folders = []
    streams = []
    for folder in folders:
        for log in sorted(folder.glob(f"*{_SUFFIX}")):
            variant, _, index = log.name[: -len(_SUFFIX)].rpartition("-")
            instance = f"{folder.name}-{variant}-{index}"
            prefix = folder.name if group == TRANSFORM_GROUP else variant
            streams.append(Stream(group, f"{prefix}/{instance}", log))
    if not streams:
        raise ResourceNotFound("The specified log group does not exist.")
    return sorted(streams, key=lambda s: s.name)


def _folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and any(d.glob(f"*{_SUFFIX}")))


def _groups(ctx: Context) -> list[str]:
    groups = set()
    for folder in _folders(ctx.settings.logs_dir):
        if ctx.store.get(kinds.TRANSFORM_JOB, folder.name) is not None:
            groups.add(TRANSFORM_GROUP)
        else:
            groups.add(ENDPOINTS_PREFIX + folder.name)
    return sorted(groups)


def _arn(ctx: Context, group: str) -> str:
    s = ctx.settings
    return f"arn:aws:logs:{s.region}:{s.account_id}:log-group:{group}"


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode()


def _untoken(token: str) -> Any:
    try:
        return orjson.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        raise InvalidParameter("The specified nextToken is invalid.") from None


def _page(items: list[Any], params: dict[str, Any], limit_default: int) -> dict[str, Any]:
    """One page of a listing by offset: (items, nextToken or None)."""
    start = int(_untoken(params["nextToken"])) if "nextToken" in params else 0
    limit = params.get("limit", limit_default)
    page = items[start : start + limit]
    more = start + limit < len(items)
    return {"items": page, **({"nextToken": _token(start + limit)} if more else {})}


def _created(path: Path) -> int:
    return int(path.stat().st_ctime * 1000)


def describe_log_groups(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    for unsupported in ("accountIdentifiers", "includeLinkedAccounts", "logGroupClass"):
        if unsupported in params:
            raise InvalidParameter(f"{unsupported} is not supported by modelhost.")
    prefix = params.get("logGroupNamePrefix", "")
    pattern = params.get("logGroupNamePattern")
    groups = [
        g
        for g in _groups(ctx)
        if g.startswith(prefix) and (pattern is None or pattern.lower() in g.lower())
    ]
    page = _page(groups, params, _MAX_LISTED)
    answer: dict[str, Any] = {
        "logGroups": [
            {
                "logGroupName": g,
                "creationTime": min(_created(s.path) for s in _streams(ctx, g)),
                "metricFilterCount": 0,
                "storedBytes": sum(s.path.stat().st_size for s in _streams(ctx, g)),
                "arn": _arn(ctx, g) + ":*",
                "logGroupArn": _arn(ctx, g),
                "logGroupClass": "STANDARD",
            }
            for g in page["items"]
        ]
    }
    if "nextToken" in page:
        answer["nextToken"] = page["nextToken"]
    return answer


def describe_log_streams(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    if "logGroupIdentifier" in params and "logGroupName" not in params:
        params = {**params, "logGroupName": params["logGroupIdentifier"].rpartition(":")[2]}
    group = params.get("logGroupName")
    if not group:
        raise InvalidParameter("logGroupName is required.")
    prefix = params.get("logStreamNamePrefix", "")
    order = params.get("orderBy", "LogStreamName")
    if prefix and order == "LastEventTime":
        raise InvalidParameter(
            "Cannot order by LastEventTime with a logStreamNamePrefix."
        )  # as CloudWatch Logs refuses it
    described = []
    for stream in _streams(ctx, group):
        if not stream.name.startswith(prefix):
            continue
        events = read_events(stream.path)
        entry: dict[str, Any] = {
            "logStreamName": stream.name,
            "creationTime": _created(stream.path),
            "arn": f"{_arn(ctx, group)}:log-stream:{stream.name}",
            "storedBytes": 0,
        }
        if events:
            entry |= {
                "firstEventTimestamp": events[0][0],
                "lastEventTimestamp": events[-1][0],
                "lastIngestionTime": events[-1][0],
            }
        described.append(entry)
    if order == "LastEventTime":
        described.sort(key=lambda e: e.get("lastEventTimestamp", 0))
    if params.get("descending"):
        described.reverse()
    page = _page(described, params, _MAX_LISTED)
    answer: dict[str, Any] = {"logStreams": page["items"]}
    if "nextToken" in page:
        answer["nextToken"] = page["nextToken"]
    return answer


def _stream(ctx: Context, params: dict[str, Any]) -> Stream:
    group = params.get("logGroupName") or params.get("logGroupIdentifier", "").rpartition(":")[2]
    for stream in _streams(ctx, group):
        if stream.name == params["logStreamName"]:
            return stream
    raise ResourceNotFound("The specified log stream does not exist.")


def _event(stamp: int, message: str) -> dict[str, Any]:
    return {"timestamp": stamp, "message": message, "ingestionTime": stamp}


def get_log_events(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("unmask"):
        raise InvalidParameter("unmask is not supported by modelhost.")
    events = read_events(_stream(ctx, params).path)
    start_time = params.get("startTime")
    end_time = params.get("endTime")
    chosen = [
        i
        for i, (stamp, _) in enumerate(events)
        if (start_time is None or stamp >= start_time) and (end_time is None or stamp < end_time)
    ]
    limit = params.get("limit", _DEFAULT_EVENTS)
    token = params.get("nextToken")
    if token is not None:
        direction, _, at = token.partition("/")
        if direction not in ("f", "b") or not at.isdigit():
            raise InvalidParameter("The specified nextToken is invalid.")
        position = int(at)
        forward = direction == "f"
    else:
        forward = bool(params.get("startFromHead", False))
        position = 0 if forward else len(events)
    if forward:
        picked = [i for i in chosen if i >= position][:limit]
    else:
        picked = [i for i in chosen if i < position][-limit:]
    picked = _within_bytes(picked, events, from_end=not forward)
    if picked:
        first, last = picked[0], picked[-1] + 1
    else:
        first = last = position
    return {
        "events": [_event(*events[i]) for i in picked],
        "nextForwardToken": f"f/{last:056d}",
        "nextBackwardToken": f"b/{first:056d}",
    }


def _within_bytes(picked: list[int], events: list[tuple[int, str]], from_end: bool) -> list[int]:
    """As many of `picked` as fit in one answer (1 MB of messages, 26 bytes each extra),
    taken from the end when reading backwards."""
    order = reversed(picked) if from_end else iter(picked)
    kept: list[int] = []
    size = 0
    for i in order:
        size += len(events[i][1].encode()) + 26
        if size > _MAX_EVENT_BYTES and kept:
            break
        kept.append(i)
    return sorted(kept)


def _matches(pattern: str) -> Any:
    """A filter pattern's test: CloudWatch's plain terms (all must appear) and quoted
    phrases; the JSON, space-delimited and regex syntaxes are refused by name."""
    text = pattern.strip()
    if not text:
        return lambda message: True
    if text[0] in "{[%" or text.startswith("?"):
        raise InvalidParameter(
            f"filterPattern {pattern!r}: only plain terms and quoted phrases are supported "
            "by modelhost (not the JSON, space-delimited, '?' or regular-expression syntax)."
        )
    terms: list[str] = []
    rest = text
    while rest:
        rest = rest.lstrip()
        if not rest:
            break
        if rest[0] == '"':
            end = rest.find('"', 1)
            if end < 0:
                raise InvalidParameter(f"filterPattern {pattern!r} has an unclosed quote.")
            terms.append(rest[1:end])
            rest = rest[end + 1 :]
        else:
            term, _, rest = rest.partition(" ")
            if term.startswith("-"):
                raise InvalidParameter(
                    f"filterPattern {pattern!r}: '-' exclusions are not supported by modelhost."
                )
            terms.append(term)
    return lambda message: all(term in message for term in terms)


def filter_log_events(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    for unsupported in ("interleaved", "unmask"):
        if params.get(unsupported):
            raise InvalidParameter(f"{unsupported} is not supported by modelhost.")
    group = params.get("logGroupName") or params.get("logGroupIdentifier", "").rpartition(":")[2]
    names = params.get("logStreamNames")
    prefix = params.get("logStreamNamePrefix")
    if names is not None and prefix is not None:
        raise InvalidParameter("logStreamNames and logStreamNamePrefix cannot both be given.")
    matches = _matches(params.get("filterPattern", ""))
    start_time = params.get("startTime")
    end_time = params.get("endTime")
    found: list[tuple[int, str, int, str]] = []
    for stream in _streams(ctx, group):
        if names is not None and stream.name not in names:
            continue
        if prefix is not None and not stream.name.startswith(prefix):
            continue
        for line, (stamp, message) in enumerate(read_events(stream.path)):
            if start_time is not None and stamp < start_time:
                continue
            if end_time is not None and stamp > end_time:
                continue
            if matches(message):
                found.append((stamp, stream.name, line, message))
    found.sort()
    if "nextToken" in params:
        after = tuple(_untoken(params["nextToken"]))
        found = [f for f in found if f[:3] > after]
    limit = params.get("limit", _DEFAULT_EVENTS)
    page = found[:limit]
    size = 0
    for n, item in enumerate(page):
        size += len(item[3].encode()) + 26
        if size > _MAX_EVENT_BYTES and n:
            page = page[:n]
            break
    answer: dict[str, Any] = {
        "events": [
            {
                "logStreamName": name,
                "timestamp": stamp,
                "message": message,
                "ingestionTime": stamp,
                "eventId": f"{stamp:020d}{line:016d}",
            }
            for stamp, name, line, message in page
        ],
        "searchedLogStreams": [],
    }
    if len(page) < len(found):
        answer["nextToken"] = _token(list(page[-1][:3]))
    return answer
