"""An in-memory instance backend for fast tests of the controllers and the router.

Each instance is a small asyncio HTTP/1.1 server on 127.0.0.1 in the test's own event
loop, answering `GET /ping` and `POST /invocations` as the SageMaker container contract
says, so the router reaches it exactly as it reaches a real model server: over TCP, with
its own keep-alive client (instances/client.py), carrying the instance's token, which the
fake is granted the way the process backend grants a real instance's and which it checks
before anything else (403 without it, as the model server does).

What an instance does is programmable, per instance and while it runs:

- `answer(body)`: 200 with that body (by default the instance's id, so a test can count
  which instance served a request);
- `fail(status, message)`: every invocation gets that status;
- `hold()` / `release()`: invocations wait (pings still answer): requests in flight on
  demand, without sleeping;
- `hang()` / `resume()`: nothing answers, pings included, while connections stay open, as
  a SIGSTOPped process behaves;
- `die()`: the socket and every connection close and `is_alive()` is False, as a crashed
  process.

How it starts is a `Plan`, chosen per spec by the backend's `plan` function: ready at
once, ready only after a while or when the test says so (`become_ready()`; `/ping`
answers 503 until then), impossible to start
(`backend.start` raises OSError) or dying before it is ready.

This is a test double, not a backend of the server: nothing in `modelhost` can select it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from modelhost.instances import InstanceSpec
from modelhost.instances.client import grant_token, revoke_token
from modelhost.instances.readiness import wait_until_answering

TOKEN_HEADER = "x-modelhost-instance-token"


@dataclass(frozen=True)
class Plan:
    """How an instance starts."""

    # /ping answers 503 this long after the start; None: until `become_ready()`
    ready_after_s: float | None = 0.0
    start_error: str | None = None  # the backend cannot start it: start() raises OSError
    crash_on_start: str | None = None  # it starts, then dies before answering /ping


def ready(_spec: InstanceSpec) -> Plan:
    return Plan()


class FakeInstance:
    def __init__(self, spec: InstanceSpec, plan: Plan, stop_grace_s: float) -> None:
        self.spec = spec
        self.plan = plan
        self.stop_grace_s = stop_grace_s
        self.token = secrets.token_urlsafe(16)
        self.status = 200
        self.body = spec.instance_id.encode()
        self.content_type = "text/plain"
        self.received = 0  # invocations that reached it
        self.served = 0  # invocations it answered
        self.in_flight = 0
        self.pings = 0
        self.refused = 0  # requests without the right token
        self.stopped = False  # stop() or kill() was called
        self.killed = False
        self._why_dead: str | None = None
        self._server: asyncio.Server | None = None
        self._port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready_at: float | None = None  # None: not until become_ready()
        self._answering = asyncio.Event()  # clear while hung
        self._answering.set()
        self._released = asyncio.Event()  # clear while held
        self._released.set()
        self._idle = asyncio.Event()
        self._idle.set()
        # The multi-model contract (/models): what is loaded (name -> url), the loads and
        # unloads in order, and how many models fit before a load answers 507.
        self.models: dict[str, str] = {}
        self.loads: list[str] = []
        self.unloads: list[str] = []
        self.model_capacity: int | None = None

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]
        if self.plan.ready_after_s is not None:
            self._ready_at = loop.time() + self.plan.ready_after_s
        grant_token(self.address, self.token)

    # --- the Instance protocol ----------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self._port)

    @property
    def pid(self) -> int | None:
        return None

    def usage(self) -> None:
        return None

    def is_alive(self) -> bool:
        return self._why_dead is None

    def failure_detail(self) -> str:
        return f"fake instance ended: {self._why_dead or 'still running'}"

    async def wait_ready(self, timeout_s: float) -> None:
        """As every backend's: poll /ping (over HTTP, with the token) until it answers
        200, fail at once if the instance died, stop it past the timeout."""
        await wait_until_answering(self, timeout_s, poll_s=0.005)

    async def stop(self) -> None:
        """Graceful, like SIGTERM to a model server: stop listening, let the requests in
        flight finish (at most `stop_grace_s`), then close."""
        self.stopped = True
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.stop_grace_s):
                await self._idle.wait()
        self._end("stopped")

    async def kill(self) -> None:
        self.stopped = self.killed = True
        self._end("killed")

    # --- programming it ------------------------------------------------------------------

    def answer(self, body: bytes, content_type: str = "text/plain") -> None:
        self.status, self.body, self.content_type = 200, body, content_type

    def fail(self, status: int, message: str = "fake failure") -> None:
        self.status, self.body, self.content_type = status, message.encode(), "text/plain"

    def become_ready(self) -> None:
        self._ready_at = 0.0

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def hang(self) -> None:
        self._answering.clear()

    def resume(self) -> None:
        self._answering.set()

    def die(self, why: str = "died") -> None:
        self._end(why)

    async def until_in_flight(self, count: int, within_s: float = 10.0) -> None:
        """Until `count` invocations are in flight here (for a held instance); an
        AssertionError if they do not arrive within `within_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while self.in_flight < count:
            assert loop.time() < deadline, (
                f"{self.spec.instance_id}: {self.in_flight} requests in flight, never {count}"
            )
            await asyncio.sleep(0.002)

    # --- the HTTP server -----------------------------------------------------------------

    def _end(self, why: str) -> None:
        if self._why_dead is not None:
            return
        self._why_dead = why
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        # Wake held and hung handlers so they see the end and return without answering.
        self._answering.set()
        self._released.set()
        revoke_token(self.address, self.token)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.is_alive():
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            while self.is_alive():
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                reply = await self._handle(method, path, headers, body)
                if reply is None or not self.is_alive():
                    return
                status, content_type, payload = reply
                writer.write(
                    f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                    f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
                    "\r\n".encode("latin-1")
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes] | None:
        if headers.get(TOKEN_HEADER) != self.token:
            self.refused += 1
            return 403, "text/plain", b"this port answers the modelhost router only"
        await self._answering.wait()
        if path == "/ping" and method in ("GET", "HEAD"):
            self.pings += 1
            ready = self._ready_at is not None and (
                asyncio.get_running_loop().time() >= self._ready_at
            )
            return (200, "application/json", b"{}") if ready else (503, "text/plain", b"")
        if path.startswith("/models"):
            return self._models(method, path, body)
        if path != "/invocations" or method != "POST":
            return 404, "text/plain", b"not found"
        self.received += 1
        self.in_flight += 1
        self._idle.clear()
        try:
            await self._released.wait()
            await self._answering.wait()  # it may hang while the request is held
            if not self.is_alive():
                return None
            self.served += 1
            return self.status, self.content_type, self.body
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    def _models(self, method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        parts = path.split("/")
        if path == "/models" and method == "POST":
            request = json.loads(body)
            name = request["model_name"]
            if name in self.models:
                return 409, "text/plain", b"already loaded"
            if self.model_capacity is not None and len(self.models) >= self.model_capacity:
                return 507, "text/plain", b"no memory left"
            self.models[name] = request["url"]
            self.loads.append(name)
            return 200, "application/json", b"{}"
        if len(parts) == 3 and method == "DELETE":
            if self.models.pop(parts[2], None) is None:
                return 404, "text/plain", b"not loaded"
            self.unloads.append(parts[2])
            return 200, "application/json", b"{}"
        if len(parts) == 4 and parts[3] == "invoke" and method == "POST":
            if parts[2] not in self.models:
                return 404, "text/plain", b"not loaded"
            self.served += 1
            return 200, "text/plain", f"{self.spec.instance_id}:{parts[2]}".encode()
        return 404, "text/plain", b"not found"


class FakeBackend:
    """Implements `modelhost.instances.InstanceBackend`; `plan` says how each instance
    starts, `instances` holds every one started, in order."""

    def __init__(
        self, plan: Callable[[InstanceSpec], Plan] = ready, stop_grace_s: float = 2.0
    ) -> None:
        self.plan = plan
        self.stop_grace_s = stop_grace_s
        self.instances: list[FakeInstance] = []
        self.warmed = False
        self.closed = False

    async def warm(self) -> None:
        self.warmed = True

    async def start(self, spec: InstanceSpec) -> FakeInstance:
        plan = self.plan(spec)
        if plan.start_error is not None:
            raise OSError(plan.start_error)
        instance = FakeInstance(spec, plan, self.stop_grace_s)
        await instance.listen()
        self.instances.append(instance)
        if plan.crash_on_start is not None:
            instance.die(plan.crash_on_start)
        return instance

    async def release(self, endpoint: str) -> None:
        pass

    async def close(self) -> None:
        self.closed = True

    def alive(self) -> list[FakeInstance]:
        return [i for i in self.instances if i.is_alive()]

    async def end_all(self) -> None:
        """Kill what is still running (a test's end, however it ended)."""
        await asyncio.gather(*(i.kill() for i in self.instances))
