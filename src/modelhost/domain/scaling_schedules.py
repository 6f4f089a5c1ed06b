"""Application Auto Scaling schedule expressions: `at(...)`, `rate(...)` and `cron(...)`.

The API checks an expression when a scheduled action is put, and the autoscaling
controller asks when it is next due; both read it here. AWS cron has six fields (minute,
hour, day of month, month, day of week, year), `?` for "any" and Sunday as day 1, so it
is translated to croniter's five fields plus a year check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

_AT = re.compile(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)")
_RATE = re.compile(r"rate\((\d+) (minutes?|hours?|days?)\)")
_CRON = re.compile(r"cron\((.+)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_YEAR_PART = re.compile(r"(\d{4})(?:-(\d{4}))?(?:/(\d+))?")
_DOW_NUMBER = re.compile(r"(?<![#/\d])([1-7])(?!\d)")
# How far back a cron schedule is searched for its latest occurrence (a year filter can
# make most occurrences not count).
_MAX_STEPS = 1000


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"Unknown time zone {name!r}; use an IANA name such as Europe/Berlin"
        ) from exc


@dataclass(frozen=True)
class Schedule:
    kind: str  # "at" | "rate" | "cron"
    at: datetime | None = None  # naive, in the action's time zone
    period_s: int = 0
    cron: str = ""
    years: str = "*"

    def latest(self, until: float, since: float, tz: ZoneInfo) -> float | None:
        """The latest time in (since, until] the schedule fires, as epoch seconds."""
        if self.kind == "at":
            assert self.at is not None
            moment = self.at.replace(tzinfo=tz).timestamp()
            return moment if since < moment <= until else None
        if self.kind == "rate":
            # Rates count from when the action was put (`since` on its first run is that);
            # missed runs collapse into the latest one.
            periods = int((until - since) // self.period_s)
            return since + periods * self.period_s if periods >= 1 else None
        start = datetime.fromtimestamp(until, tz) + timedelta(seconds=1)
        walker = croniter(self.cron, start)
        for _ in range(_MAX_STEPS):
            fired = walker.get_prev(datetime)
            if fired.timestamp() <= since:
                return None
            if _year_matches(self.years, fired.year):
                return float(fired.timestamp())
        return None


def parse(expression: str) -> Schedule:
    """Raise ValueError, with what is wrong, for anything AWS would refuse."""
    text = expression.strip()
    if match := _AT.fullmatch(text):
        return Schedule("at", at=datetime.fromisoformat(match.group(1)))
    if match := _RATE.fullmatch(text):
        value, unit = int(match.group(1)), match.group(2).rstrip("s")
        if value < 1:
            raise ValueError("A rate must be at least 1")
        return Schedule("rate", period_s=value * _UNIT_SECONDS[unit])
    if match := _CRON.fullmatch(text):
        fields = match.group(1).split()
        if len(fields) != 6:
            raise ValueError(
                "A cron expression has six fields: minutes hours day-of-month "
                "month day-of-week year"
            )
        minute, hour, dom, month, dow, years = fields
        if not all(_YEAR_PART.fullmatch(p) for p in years.split(",")) and years != "*":
            raise ValueError(f"Invalid year field {years!r}")
        dow = _DOW_NUMBER.sub(lambda m: str(int(m.group(1)) - 1), dow)  # AWS: 1 = Sunday
        expression5 = " ".join(f.replace("?", "*") for f in (minute, hour, dom, month, dow))
        if not croniter.is_valid(expression5):
            raise ValueError(f"Invalid cron expression {match.group(1)!r}")
        return Schedule("cron", cron=expression5, years=years)
    raise ValueError("A schedule is at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron(fields)")


def _year_matches(field: str, year: int) -> bool:
    if field == "*":
        return True
    for part in field.split(","):
        match = _YEAR_PART.fullmatch(part)
        if match is None:
            continue
        first = int(match.group(1))
        last = int(match.group(2) or (9999 if match.group(3) else first))
        step = int(match.group(3) or 1)
        if first <= year <= last and (year - first) % step == 0:
            return True
    return False
