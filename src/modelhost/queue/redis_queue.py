"""The Redis queue backend: one queue shared by several modelhost servers.

Each job is a hash (`data`: the request as accepted; plus the fields that change: state,
attempts, token, lease_until, error, finished). Per endpoint, a sorted set of queued ids
by arrival, one of queued ids backing off after a failed attempt by the time of their
next attempt (moved to the first by `lease()` once due), one of running ids by lease
deadline, and one per final state; across
endpoints, one of finished ids by finish time, for pruning. Leasing and
every change to a leased job are Lua scripts, so they are atomic across servers. Leases
are not given back on start (other servers may hold them): a dead server's leases run
out after `MODELHOST_ASYNC_LEASE` seconds and its jobs go to whoever leases next.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import redis

from modelhost.queue.jobs import FAILED, QUEUED, RUNNING, SUCCEEDED, Job, JobCounts

_PREFIX = "modelhost:async:"
# Queued jobs backing off after a failed attempt, by the time of their next attempt.
_DELAYED = "delayed"
_FINISHED = f"{_PREFIX}finished"

# Promotes the delayed jobs whose backoff is over to the queued set, in their place by
# arrival. KEYS[1]: queued, KEYS[3]: delayed, ARGV[1]: now, ARGV[4]: job key prefix.
_PROMOTE = """
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[3], id)
  local data = redis.call('HGET', ARGV[4] .. id, 'data')
  if data then
    redis.call('ZADD', KEYS[1], cjson.decode(data)['created'], id)
  end
end
"""

# KEYS: queued, running, delayed. ARGV: now, limit, lease_until, job key prefix, tokens...
_LEASE = (
    _PROMOTE
    + """
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, limit)
if #ids < limit then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, limit - #ids - 1)) do
    table.insert(ids, id)
  end
end
for i, id in ipairs(ids) do
  local key = ARGV[4] .. id
  redis.call('ZREM', KEYS[1], id)
  redis.call('HSET', key, 'state', 'running', 'token', ARGV[4 + i], 'lease_until', ARGV[3])
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('ZADD', KEYS[2], ARGV[3], id)
end
return ids
"""
)

# KEYS: queued, running, delayed. ARGV: now, limit, lease_until, job key prefix, tokens...
# Leases queued jobs past their TTL, backing off or not, looking at the oldest 100 of each
# set (queues are FIFO, so the expired ones are near the front).
_EXPIRED = """
local now, limit, leased = tonumber(ARGV[1]), tonumber(ARGV[2]), {}
for _, waiting in ipairs({KEYS[1], KEYS[3]}) do
  for _, id in ipairs(redis.call('ZRANGE', waiting, 0, 99)) do
    if #leased >= limit then break end
    local key = ARGV[4] .. id
    if tonumber(redis.call('HGET', key, 'expires_at')) < now then
      table.insert(leased, id)
      redis.call('ZREM', waiting, id)
      redis.call('HSET', key, 'state', 'running', 'token', ARGV[4 + #leased],
                 'lease_until', ARGV[3])
      redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('ZADD', KEYS[2], ARGV[3], id)
    end
  end
end
return leased
"""

# KEYS: job, running, target set, finished set. ARGV: token, id, action, score, state,
# error, finished, lease_until (a retried job's next attempt time, else 0).
_CHANGE_HELD = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running'
   or redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return 0
end
if ARGV[3] == 'renew' then
  redis.call('HSET', KEYS[1], 'lease_until', ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
  return 1
end
redis.call('HSET', KEYS[1], 'state', ARGV[5], 'error', ARGV[6], 'finished', ARGV[7],
           'lease_until', ARGV[8], 'token', '')
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
if ARGV[3] == 'finish' then
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[2])
end
return 1
"""

# KEYS: finished set. ARGV: finished before, limit, key prefix. Deletes finished jobs and
# their entries in their endpoint's final-state set.
_PRUNE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0,
                       tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local key = ARGV[3] .. 'job:' .. id
  local fields = redis.call('HMGET', key, 'data', 'state')
  if fields[1] then
    local endpoint = cjson.decode(fields[1])['endpoint']
    redis.call('ZREM', ARGV[3] .. fields[2] .. ':' .. endpoint, id)
    redis.call('DEL', key)
  end
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"""

# KEYS: the endpoints set. ARGV: key prefix. Drops endpoints with nothing to do, in the
# same step as looking, so a job queued meanwhile is never hidden.
_ENDPOINTS = """
local busy = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('ZCARD', ARGV[1] .. 'queued:' .. name) +
     redis.call('ZCARD', ARGV[1] .. 'delayed:' .. name) +
     redis.call('ZCARD', ARGV[1] .. 'running:' .. name) > 0 then
    table.insert(busy, name)
  else
    redis.call('SREM', KEYS[1], name)
  end
end
return busy
"""


def _key(kind: str, endpoint: str) -> str:
    return f"{_PREFIX}{kind}:{endpoint}"


def _job_key(job_id: str) -> str:
    return f"{_PREFIX}job:{job_id}"


def _job(fields: dict[bytes, bytes]) -> Job:
    """A job from its hash."""
    job = Job(**orjson.loads(fields[b"data"]))
    job.state = fields[b"state"].decode()
    job.attempts = int(fields[b"attempts"])
    job.token = fields[b"token"].decode()
    job.lease_until = float(fields[b"lease_until"])
    job.error = fields[b"error"].decode() or None
    job.finished = float(fields[b"finished"]) or None
    return job


_SOCKET_TIMEOUT_S = 10.0


class RedisQueue:
    """Every call is a network round trip (`local` is False): code on the event loop
    reaches it through `LoopQueue`, in a worker thread. The client's connection pool is
    thread-safe, so calls from several threads at once each get their own connection."""

    local = False

    def __init__(self, url: str) -> None:
        # A Redis that stops answering fails each call after the timeout (the caller sees
        # a retriable error) instead of holding a queue thread for ever; options in the
        # URL's query string win over these defaults.
        self._redis: Any = redis.Redis.from_url(
            url, socket_timeout=_SOCKET_TIMEOUT_S, socket_connect_timeout=_SOCKET_TIMEOUT_S
        )
        self._lease = self._redis.register_script(_LEASE)
        self._expired = self._redis.register_script(_EXPIRED)
        self._change = self._redis.register_script(_CHANGE_HELD)
        self._endpoints = self._redis.register_script(_ENDPOINTS)
        self._prune = self._redis.register_script(_PRUNE)

    def put(self, jobs: list[Job]) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for job in jobs:
            pipe.hset(
                _job_key(job.id),
                mapping={
                    "data": orjson.dumps(job),
                    "state": job.state,
                    "attempts": job.attempts,
                    "token": job.token,
                    "lease_until": job.lease_until,
                    "error": job.error or "",
                    "finished": job.finished or 0,
                    "expires_at": job.expires_at,
                },
            )
            pipe.zadd(_key(QUEUED, job.endpoint), {job.id: job.created})
            pipe.sadd(f"{_PREFIX}endpoints", job.endpoint)
        pipe.execute()

    def recover(self) -> int:
        return 0  # other servers may hold leases; dead ones' leases run out by themselves

    def lease(self, endpoint: str, limit: int, lease_s: float) -> list[Job]:
        return self._run_lease(self._lease, endpoint, limit, lease_s)

    def expired(self, endpoint: str, limit: int, lease_s: float) -> list[Job]:
        return self._run_lease(self._expired, endpoint, limit, lease_s)

    def _run_lease(self, script: Any, endpoint: str, limit: int, lease_s: float) -> list[Job]:
        if limit <= 0:
            return []
        now = time.time()
        tokens = [uuid.uuid4().hex for _ in range(limit)]
        ids = script(
            keys=[_key(QUEUED, endpoint), _key(RUNNING, endpoint), _key(_DELAYED, endpoint)],
            args=[now, limit, now + lease_s, f"{_PREFIX}job:", *tokens],
        )
        return self._load(ids)

    def _change_held(
        self,
        job: Job,
        action: str,
        score: float,
        state: str = "",
        error: str | None = None,
        finished: float = 0.0,
        target: str = "",
        lease_until: float = 0.0,
    ) -> bool:
        target = target or {"renew": RUNNING}.get(action, state)
        changed = self._change(
            keys=[
                _job_key(job.id),
                _key(RUNNING, job.endpoint),
                _key(target, job.endpoint),
                _FINISHED,
            ],
            args=[job.token, job.id, action, score, state, error or "", finished, lease_until],
        )
        return bool(changed)

    def renew(self, job: Job, lease_s: float) -> bool:
        until = time.time() + lease_s
        if not self._change_held(job, "renew", until):
            return False
        job.lease_until = until
        return True

    def finish(self, job: Job, succeeded: bool, error: str | None = None) -> bool:
        now = time.time()
        state = SUCCEEDED if succeeded else FAILED
        if not self._change_held(job, "finish", now, state, error, now):
            return False
        job.state, job.error, job.finished, job.lease_until = state, error, now, 0.0
        return True

    def retry(self, job: Job, error: str, delay_s: float = 0.0) -> bool:
        """Back in the queued set at its place by arrival, or, with a delay, in the
        delayed set until its next attempt time (`lease()` moves it back then)."""
        if delay_s > 0:
            visible = time.time() + delay_s
            changed = self._change_held(
                job, "retry", visible, QUEUED, error, target=_DELAYED, lease_until=visible
            )
        else:
            visible = 0.0
            changed = self._change_held(job, "retry", job.created, QUEUED, error, target=QUEUED)
        if not changed:
            return False
        job.state, job.error, job.token, job.lease_until = QUEUED, error, "", visible
        return True

    def get(self, job_id: str) -> Job | None:
        fields = self._redis.hgetall(_job_key(job_id))
        return _job(fields) if fields else None

    def _load(self, ids: list[bytes]) -> list[Job]:
        """The jobs with these ids in one round trip; an id whose job is gone is skipped."""
        pipe = self._redis.pipeline(transaction=False)
        for raw in ids:
            pipe.hgetall(_job_key(raw.decode()))
        return [_job(fields) for fields in pipe.execute() if fields]

    def counts(self, endpoint: str) -> JobCounts:
        pipe = self._redis.pipeline(transaction=False)
        for state in (QUEUED, _DELAYED, RUNNING, FAILED, SUCCEEDED):
            pipe.zcard(_key(state, endpoint))
        queued, delayed, running, failed, succeeded = pipe.execute()
        return JobCounts(
            queued=queued + delayed, running=running, failed=failed, succeeded=succeeded
        )

    def endpoints(self) -> list[str]:
        names = self._endpoints(keys=[f"{_PREFIX}endpoints"], args=[_PREFIX])
        return [name.decode() for name in names]

    def jobs(self, endpoint: str, state: str, limit: int = 100) -> list[Job]:
        ids = self._redis.zrange(_key(state, endpoint), 0, limit - 1)
        if state == QUEUED and len(ids) < limit:  # those backing off are queued too
            ids += self._redis.zrange(_key(_DELAYED, endpoint), 0, limit - len(ids) - 1)
        return self._load(ids)

    def prune(self, finished_before: float, limit: int) -> int:
        """Delete up to `limit` finished jobs that ended before `finished_before`; no
        worker holds a finished job, so none can be redelivered."""
        return int(self._prune(keys=[_FINISHED], args=[finished_before, limit, _PREFIX]))

    def close(self) -> None:
        self._redis.close()
