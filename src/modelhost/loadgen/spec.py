"""What a load test sends: its target, its payloads and its phases.

A spec is plain data so it can cross a process boundary as JSON: callers that share an
event loop with the system under test (the server's recommender) run the generator in a
child process (`python -m modelhost.loadgen`) and hand it the spec on stdin.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

Mode = Literal["open", "closed"]


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of load. Open loop: `rate` requests/s, ramping linearly to `end_rate`
    when given. Closed loop: `users` clients each sending back-to-back, ramping linearly to
    `end_users` when given."""

    duration_s: float
    rate: float | None = None
    end_rate: float | None = None
    users: int | None = None
    end_users: int | None = None

    def rate_at(self, t: float) -> float:
        return self._ramp(self.rate or 0.0, self.end_rate, t)

    def users_at(self, t: float) -> int:
        return round(self._ramp(self.users or 0, self.end_users, t))

    def _ramp(self, start: float, end: float | None, t: float) -> float:
        """`start` at the phase's beginning, moving linearly to `end` (if given) by its end."""
        end = start if end is None else end
        return start + (end - start) * min(max(t / self.duration_s, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One load test against one URL (plain http://, keep-alive HTTP/1.1).

    Open loop sends each request at its scheduled time whether or not earlier ones have
    answered, and measures latency from that scheduled time: a stalled server shows up as
    latency instead of as fewer requests (no coordinated omission). `max_connections`
    bounds the connections (and requests in flight); requests past it wait, and the wait
    counts in their latency. `timeout_s` also runs from the scheduled time: a request that
    waited that long is a timeout, sent or not. Closed loop is `users` clients in lock-step
    with the server.
    """

    url: str
    phases: tuple[Phase, ...]
    mode: Mode = "open"
    payloads: tuple[bytes, ...] = (b"",)
    content_type: str = "application/json"
    accept: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    max_connections: int = 256
    timeout_s: float = 10.0
    seed: int | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f"load generator needs an http://host[:port]/path URL, not {self.url!r}"
            )
        if not self.phases:
            raise ValueError("at least one phase is needed")
        if not self.payloads:
            raise ValueError("at least one payload is needed")
        if self.max_connections < 1 or self.timeout_s <= 0:
            raise ValueError("max_connections must be ≥ 1 and timeout_s > 0")
        for phase in self.phases:
            if phase.duration_s <= 0:
                raise ValueError("every phase needs a positive duration")
            if self.mode == "open" and (
                phase.rate is None or phase.rate < 0 or (phase.end_rate or 0) < 0
            ):
                raise ValueError("open-loop phases need a rate ≥ 0 (requests/s)")
            if self.mode == "closed" and (
                phase.users is None or phase.users < 0 or (phase.end_users or 0) < 0
            ):
                raise ValueError("closed-loop phases need a number of users ≥ 0")

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    @property
    def path(self) -> bytes:
        parts = urlsplit(self.url)
        return ((parts.path or "/") + (f"?{parts.query}" if parts.query else "")).encode()

    @property
    def duration_s(self) -> float:
        return sum(phase.duration_s for phase in self.phases)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "mode": self.mode,
            "phases": [{k: getattr(p, k) for k in Phase.__slots__} for p in self.phases],
            "payloads": [base64.b64encode(p).decode() for p in self.payloads],
            "content_type": self.content_type,
            "accept": self.accept,
            "headers": [list(h) for h in self.headers],
            "max_connections": self.max_connections,
            "timeout_s": self.timeout_s,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LoadSpec:
        return cls(
            url=raw["url"],
            mode=raw["mode"],
            phases=tuple(Phase(**p) for p in raw["phases"]),
            payloads=tuple(base64.b64decode(p) for p in raw["payloads"]),
            content_type=raw["content_type"],
            accept=raw.get("accept"),
            headers=tuple((k, v) for k, v in raw.get("headers", [])),
            max_connections=raw["max_connections"],
            timeout_s=raw["timeout_s"],
            seed=raw.get("seed"),
        )
