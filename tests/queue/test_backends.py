"""The queue contract, held by both backends: SQLite and a real redis-server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from modelhost.queue import Job, JobQueue, SqliteQueue, open_queue
from tests.support.redis import redis_server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis"])
def queue(request, tmp_path) -> Iterator[JobQueue]:
    if request.param == "sqlite":
        opened = open_queue("sqlite", tmp_path / "queue.db")
    else:
        opened = open_queue(request.getfixturevalue("redis_url"), tmp_path / "unused.db")
    yield opened
    opened.close()


def _job(endpoint: str, n: int = 0) -> Job:
    now = time.time() + n * 1e-3
    return Job(
        id=str(uuid.uuid4()),
        endpoint=endpoint,
        inference_id=f"i-{n}",
        input_location=f"s3://in/{n}",
        output_location=f"s3://out/{n}.out",
        failure_location=f"s3://failed/{n}-error.out",
        created=now,
        expires_at=now + 3600,
        timeout_s=60,
        notification={"SuccessTopic": "x"},
    )


def test_lease_finish_and_counts(queue: JobQueue) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:6]}"
    jobs = [_job(endpoint, n) for n in range(3)]
    for job in jobs:
        queue.put([job])
    assert endpoint in queue.endpoints()
    leased = queue.lease(endpoint, 2, 30)
    assert [j.inference_id for j in leased] == ["i-0", "i-1"]  # oldest first
    assert all(j.state == "running" and j.attempts == 1 and j.token for j in leased)
    assert leased[0].notification == {"SuccessTopic": "x"}
    assert queue.lease(endpoint, 5, 30)[0].inference_id == "i-2"
    assert queue.lease(endpoint, 5, 30) == []
    assert queue.finish(leased[0], True)
    assert queue.finish(leased[1], False, "model said no")
    counts = queue.counts(endpoint)
    assert (counts.queued, counts.running, counts.succeeded, counts.failed) == (0, 1, 1, 1)
    assert counts.backlog == 1
    (failed,) = queue.jobs(endpoint, "failed")
    assert failed.error == "model said no" and failed.finished
    assert queue.get(leased[0].id).state == "succeeded"  # type: ignore[union-attr]


def test_expired_lease_is_redelivered_and_fences_the_old_worker(queue: JobQueue) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:6]}"
    queue.put([_job(endpoint)])
    (first,) = queue.lease(endpoint, 1, 0.05)
    time.sleep(0.1)  # the first worker stalls past its lease
    (second,) = queue.lease(endpoint, 1, 30)
    assert second.id == first.id and second.attempts == 2 and second.token != first.token
    assert not queue.renew(first, 30)
    assert not queue.finish(first, True)
    assert queue.renew(second, 30)
    assert queue.finish(second, True)
    assert queue.get(first.id).state == "succeeded"  # type: ignore[union-attr]
    assert endpoint not in queue.endpoints()


def test_expired_leases_only_jobs_past_their_ttl(queue: JobQueue) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:6]}"
    fresh, stale = _job(endpoint, 0), _job(endpoint, 1)
    stale.expires_at = time.time() - 1
    queue.put([fresh, stale])
    (expired,) = queue.expired(endpoint, 10, 30)
    assert expired.id == stale.id and expired.state == "running"
    assert queue.expired(endpoint, 10, 30) == []
    assert [j.id for j in queue.lease(endpoint, 10, 30)] == [fresh.id]


def test_retry_puts_the_job_back(queue: JobQueue) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:6]}"
    queue.put([_job(endpoint)])
    (job,) = queue.lease(endpoint, 1, 30)
    assert queue.retry(job, "instance died")
    assert not queue.finish(job, True)  # the retried lease is spent
    (again,) = queue.lease(endpoint, 1, 30)
    assert again.attempts == 2 and again.error == "instance died"


def test_retry_with_a_delay_hides_the_job_until_its_next_attempt(queue: JobQueue) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:6]}"
    queue.put([_job(endpoint)])
    (job,) = queue.lease(endpoint, 1, 30)
    assert queue.retry(job, "object store unavailable", delay_s=30)
    assert job.state == "queued" and job.lease_until > time.time() + 20
    assert queue.lease(endpoint, 10, 30) == []  # invisible while it backs off
    counts = queue.counts(endpoint)
    assert (counts.queued, counts.running, counts.backlog) == (1, 0, 1)
    assert endpoint in queue.endpoints()
    (waiting,) = queue.jobs(endpoint, "queued")
    assert waiting.id == job.id and waiting.error == "object store unavailable"
    assert not queue.finish(job, True)  # the retried lease is spent


def test_a_delayed_job_comes_back_in_its_place_by_arrival(queue: JobQueue) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:6]}"
    older, newer = _job(endpoint, 0), _job(endpoint, 1)
    queue.put([older, newer])
    (job,) = queue.lease(endpoint, 1, 30)
    assert job.id == older.id
    assert queue.retry(job, "blip", delay_s=0.2)
    time.sleep(0.3)  # past its next attempt time
    again = queue.lease(endpoint, 10, 30)
    assert [j.id for j in again] == [older.id, newer.id]
    assert again[0].attempts == 2 and again[0].error == "blip"


def test_expired_fails_a_job_that_backs_off_past_its_ttl(queue: JobQueue) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:6]}"
    job = _job(endpoint)
    job.expires_at = time.time() + 0.2
    queue.put([job])
    (leased,) = queue.lease(endpoint, 1, 30)
    assert queue.retry(leased, "blip", delay_s=3600)
    time.sleep(0.3)  # its TTL runs out while it waits for its next attempt
    (expired,) = queue.expired(endpoint, 10, 30)
    assert expired.id == job.id and expired.state == "running"
    assert queue.finish(expired, False, "expired")
    assert endpoint not in queue.endpoints()


def test_concurrent_workers_never_lease_a_job_twice(queue: JobQueue) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:6]}"
    for n in range(200):
        queue.put([_job(endpoint, n)])
    leased: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while batch := queue.lease(endpoint, 3, 30):
            with lock:
                leased.extend(j.id for j in batch)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(leased) == 200 and len(set(leased)) == 200


def test_sqlite_recover_gives_leases_back(tmp_path) -> None:
    queue = SqliteQueue(tmp_path / "q.db")
    queue.put([_job("ep")])
    queue.lease("ep", 1, 3600)
    queue.close()
    reopened = SqliteQueue(tmp_path / "q.db")
    assert reopened.recover() == 1
    (job,) = reopened.lease("ep", 1, 30)
    assert job.attempts == 2
    reopened.close()


def test_unknown_queue_url_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="MODELHOST_ASYNC_QUEUE"):
        open_queue("postgres://x", tmp_path / "q.db")
