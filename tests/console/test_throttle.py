"""The console's sign-in throttle: a few free failures, then lockouts that double, per
key id and per address, forgotten after a while, in bounded memory. A hand-moved clock
stands in for time."""

from __future__ import annotations

from modelhost.console.throttle import SignInThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle(clock: Clock, **overrides: int) -> SignInThrottle:
    settings = {"free": 3, "free_per_address": 10, "capacity": 100, **overrides}
    return SignInThrottle(base_s=1.0, max_s=60.0, clock=clock, **settings)


def test_free_failures_then_lockouts_that_double_up_to_the_longest() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    for _ in range(3):
        assert throttle.wait_s("alice", "10.0.0.1") == 0
        throttle.failed("alice", "10.0.0.1")
    assert throttle.wait_s("alice", "10.0.0.1") == 0  # three failures are free
    waits = []
    for _ in range(8):
        throttle.failed("alice", "10.0.0.1")
        waits.append(throttle.wait_s("alice", "10.0.0.1"))
        clock.now += waits[-1]  # the caller waits out each lockout
        assert throttle.wait_s("alice", "10.0.0.1") == 0
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_locked_key_is_locked_from_every_address_and_others_are_not() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    for _ in range(4):
        throttle.failed("alice", "10.0.0.1")
    assert throttle.wait_s("alice", "10.0.0.2") == 1
    assert throttle.wait_s("bob", "10.0.0.2") == 0
    assert throttle.wait_s("bob", "10.0.0.1") == 0  # the address has failures to spare


def test_an_address_guessing_many_key_ids_is_locked_for_all_of_them() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    for number in range(11):
        throttle.failed(f"made-up-{number}", "10.0.0.1")
    assert throttle.wait_s("a-fresh-id", "10.0.0.1") == 1
    assert throttle.wait_s("a-fresh-id", "10.0.0.2") == 0


def test_a_success_clears_its_keys_count_but_not_its_addresss() -> None:
    clock = Clock()
    throttle = _throttle(clock, free_per_address=4)
    for _ in range(3):
        throttle.failed("alice", "10.0.0.1")
    throttle.succeeded("alice")
    throttle.failed("alice", "10.0.0.1")
    assert throttle.wait_s("alice", "10.0.0.9") == 0  # one failure since the success
    throttle.failed("alice", "10.0.0.1")  # the address's fifth
    assert throttle.wait_s("bob", "10.0.0.1") == 1


def test_counts_are_forgotten_the_longest_lockout_after_the_last_failure_and_lockout() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    for _ in range(3):
        throttle.failed("alice", "10.0.0.1")
    clock.now += 60
    throttle.failed("alice", "10.0.0.1")  # counted afresh: the first of three free ones
    assert throttle.wait_s("alice", "10.0.0.1") == 0
    for _ in range(2 + 6):  # free ones, then lockouts of 1 s to 32 s
        throttle.failed("alice", "10.0.0.1")
    assert throttle.wait_s("alice", "10.0.0.1") == 32
    clock.now += 32 + 59  # not yet forgotten: the next failure locks for the longest
    throttle.failed("alice", "10.0.0.1")
    assert throttle.wait_s("alice", "10.0.0.1") == 60


def test_a_flood_of_made_up_key_ids_keeps_memory_bounded() -> None:
    clock = Clock()
    throttle = _throttle(clock, capacity=50)
    for number in range(10_000):
        throttle.failed(f"id-{number}", f"10.0.{number // 256}.{number % 256}")
    assert throttle.sizes() == (50, 50)
    # The most recent failures are the ones kept.
    throttle.failed("id-9999", "10.0.39.15")
    throttle.failed("id-9999", "10.0.39.15")
    throttle.failed("id-9999", "10.0.39.15")
    assert throttle.wait_s("id-9999", "elsewhere") == 1
