"""How long a failed attempt waits before the next: exponential backoff with jitter.

Back-to-back retries spend every attempt inside one short outage (a sub-second blip of
the object store fails the request for good); waiting longer after each failure rides it
out. The jitter spreads the retries of many requests that failed together, so they do not
come back at the same instant. The wait is drawn from the upper half of the window ("equal
jitter"), so it never shrinks to nothing.
"""

from __future__ import annotations

import random


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """The wait after failed attempt number `attempt` (1 for the first): a random time
    from half of `base_s * 2 ** (attempt - 1)`, capped at `cap_s`, to all of it."""
    window = min(cap_s, base_s * 2.0 ** min(max(attempt, 1) - 1, 62))
    return window / 2 + random.uniform(0, window / 2)
