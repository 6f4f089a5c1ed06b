"""How fast the console's sign-in may be guessed at: failed sign-ins counted per access
key id and per client address, and past a few of them a lockout that doubles with each
further failure.

A console secret is checked by comparing it, so without a bound anyone who can reach the
sign-in form could try secrets as fast as the server answers. Here the first
`free` failures of a key id (or `free_per_address` of an address, more since several
people may share one) cost nothing; each failure after that locks the key id (or the
address) for `base_s`, then twice as long, up to `max_s`. While locked, a sign-in is
refused before its secret is compared, right or wrong, so a lockout cannot be used to
learn whether a guess was right. A successful sign-in clears its key id's count (not its
address's: signing in with one's own key must not clear the count of guesses at another
key). A count is forgotten once `max_s` has passed since its last failure and its
lockout, so past the longest lockout each further guess costs another `max_s`.

Every key id is counted alike, known or not, so a lockout tells nothing about which ids
exist; and each map keeps at most `capacity` entries (the least recently failed go
first), so a flood of made-up ids or addresses cannot grow the server's memory. Such a
flood can evict a key id's count, but not the flooding address's own.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

#: Failures that cost nothing, per key id and per client address.
FREE = 5
FREE_PER_ADDRESS = 20
#: The first lockout, and the longest one (also how long a count outlives its lockout).
BASE_S = 1.0
MAX_S = 15 * 60.0
#: Entries kept per map.
CAPACITY = 10_000


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float


class _Counter:
    """Failures by one kind of name (key ids, or addresses), in least recently failed
    order, at most `capacity` of them."""

    def __init__(self, free: int, base_s: float, max_s: float, capacity: int) -> None:
        self._free = free
        self._base_s = base_s
        self._max_s = max_s
        self._capacity = capacity
        self._entries: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def wait_s(self, name: str, now: float) -> float:
        """Seconds until `name` may try again (0: it may now)."""
        entry = self._current(name, now)
        return 0.0 if entry is None else max(0.0, entry.locked_until - now)

    def fail(self, name: str, now: float) -> None:
        entry = self._current(name, now) or _Failures(0, now, now)
        entry.count += 1
        entry.last = now
        past = entry.count - self._free
        if past > 0:
            entry.locked_until = now + min(self._max_s, self._base_s * 2 ** min(past - 1, 64))
        self._entries[name] = entry
        self._entries.move_to_end(name)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def clear(self, name: str) -> None:
        self._entries.pop(name, None)

    def _current(self, name: str, now: float) -> _Failures | None:
        """The entry of `name`, unless it is forgotten by now (dropping it then)."""
        entry = self._entries.get(name)
        if entry is not None and now >= max(entry.last, entry.locked_until) + self._max_s:
            del self._entries[name]
            return None
        return entry


class SignInThrottle:
    """Failed console sign-ins per access key id and per client address. Used from the
    event loop only (no locking)."""

    def __init__(
        self,
        *,
        free: int = FREE,
        free_per_address: int = FREE_PER_ADDRESS,
        base_s: float = BASE_S,
        max_s: float = MAX_S,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = _Counter(free, base_s, max_s, capacity)
        self._addresses = _Counter(free_per_address, base_s, max_s, capacity)
        self._clock = clock

    def wait_s(self, key_id: str, address: str) -> int:
        """Whole seconds (rounded up) before a sign-in as `key_id` from `address` may be
        checked; 0 when it may be now."""
        now = self._clock()
        wait = max(self._keys.wait_s(key_id, now), self._addresses.wait_s(address, now))
        return math.ceil(wait)

    def failed(self, key_id: str, address: str) -> None:
        now = self._clock()
        self._keys.fail(key_id, now)
        self._addresses.fail(address, now)

    def succeeded(self, key_id: str) -> None:
        self._keys.clear(key_id)

    def sizes(self) -> tuple[int, int]:
        """How many key ids and addresses are remembered."""
        return len(self._keys), len(self._addresses)
