"""Short model calls on the event loop: the real app, handlers and runner around a model
that records which thread each call ran on and can be made slow, so which calls ran
inline is seen, not inferred from timing."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import orjson

from modelhost.modelserver.app import ModelServerApp
from modelhost.modelserver.frameworks import FRAMEWORKS
from modelhost.modelserver.handlers import Handlers
from modelhost.modelserver.inline import LEARN, NEVER_AGAIN_S, InlineGate
from modelhost.modelserver.protocol import Request, Responder
from modelhost.modelserver.runner import ModelRunner

JSON = b"application/json"
#: Long enough that a test waiting for it would hang rather than pass.
NEVER_S = 600.0


class ThreadModel:
    """predict: each row's sum; records the thread of every call; sleeps `sleep_s` in a
    call while it is set."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.sleep_s = 0.0

    def predict(self, data: np.ndarray) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return data.sum(axis=1)


class Wire:
    """Where a Responder writes: the bytes of the answers."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def request(rows: list[list[float]]) -> Request:
    return Request(b"POST", b"/invocations", [(b"content-type", JSON)], orjson.dumps(rows), True)


class Client:
    """Sends requests to the app as the protocol does, and says where each ran."""

    def __init__(self, app: ModelServerApp, model: ThreadModel) -> None:
        self.app = app
        self.model = model

    async def send(self, rows: list[list[float]]) -> tuple[str, bytes]:
        """(the thread the model ran on, the answer's bytes)."""
        wire = Wire()
        req = request(rows)
        pending = self.app(req, Responder(wire, req))  # type: ignore[arg-type]
        if pending is not None:
            await pending
        return self.model.threads[-1], b"".join(wire.written)


def serving(
    user_code: bool = False,
    inline_call_ms: float = 1.0,
    workers: int = 1,
    idle_wait_s: float = NEVER_S,
) -> Client:
    """The app around a ThreadModel; by default a request that finds the worker busy
    waits for it as long as it takes, so which thread a call runs on never depends on
    how fast this machine's threads are scheduled."""
    model = ThreadModel()
    predict_fn = (lambda data, model: model.predict(data)) if user_code else None
    handlers = Handlers(model, FRAMEWORKS["sklearn"], "/nonexistent", predict_fn=predict_fn)
    app = ModelServerApp(
        handlers,
        ModelRunner(workers),
        workers,
        inline_call_ms=inline_call_ms,
        idle_wait_s=idle_wait_s,
    )
    return Client(app, model)


ROW = [[1.0, 2.0, 3.0]]


def test_a_model_whose_calls_are_short_is_called_on_the_loop_after_it_showed_it() -> None:
    async def main() -> None:
        client = serving()
        answers = [await client.send(ROW) for _ in range(LEARN + 5)]
        loop_thread = threading.current_thread().name
        assert {thread for thread, _ in answers[:LEARN]} == {"model-0"}
        assert {thread for thread, _ in answers[LEARN + 1 :]} == {loop_thread}
        # The same answer either way, status line to body.
        assert len({answer for _, answer in answers}) == 1
        assert answers[0][1].startswith(b"HTTP/1.1 200 OK\r\n")
        assert answers[0][1].endswith(b"[6.0]")
        # A body larger than any seen goes to a thread.
        thread, answer = await client.send(ROW * 50)
        assert thread == "model-0"
        assert answer.endswith(b"[" + b",".join([b"6.0"] * 50) + b"]")

    asyncio.run(main())


def test_an_inline_call_that_fails_gets_its_error_answer() -> None:
    async def main() -> None:
        client = serving()
        for _ in range(LEARN + 1):
            await client.send(ROW)
        wire = Wire()
        req = Request(b"POST", b"/invocations", [(b"content-type", JSON)], b"[[1,2", True)
        assert client.app(req, Responder(wire, req)) is None  # type: ignore[arg-type]
        answer = b"".join(wire.written)
        assert answer.startswith(b"HTTP/1.1 400 ")
        # The next call still runs inline: a refused body says nothing about the model.
        thread, _ = await client.send(ROW)
        assert thread == threading.current_thread().name

    asyncio.run(main())


def test_a_slow_inline_call_sends_the_model_to_threads_for_good() -> None:
    async def main() -> None:
        client = serving()
        for _ in range(LEARN + 1):
            await client.send(ROW)
        client.model.sleep_s = NEVER_AGAIN_S * 1.5
        thread, _ = await client.send(ROW)
        assert thread == threading.current_thread().name  # it could not be known before
        client.model.sleep_s = 0.0
        threads = {(await client.send(ROW))[0] for _ in range(LEARN * 2)}
        assert threads == {"model-0"}

    asyncio.run(main())


def test_user_code_and_a_zero_budget_always_run_on_worker_threads() -> None:
    async def main() -> None:
        for client in (serving(user_code=True), serving(inline_call_ms=0.0)):
            threads = {(await client.send(ROW))[0] for _ in range(LEARN * 2)}
            assert threads == {"model-0"}

    asyncio.run(main())


def test_no_call_runs_inline_while_a_worker_thread_runs_one() -> None:
    """One worker (SAGEMAKER_MODEL_SERVER_WORKERS=1): the model is never called twice at
    once, inline or not. A request that could run inline waits for the busy thread, then
    runs on the loop."""

    async def main() -> None:
        client = serving()
        for _ in range(LEARN + 1):
            await client.send(ROW)
        calls = len(client.model.threads)
        runner = client.app.runner
        release = threading.Event()
        held = runner.submit(release.wait)
        assert runner.in_flight == 1
        sent = asyncio.ensure_future(client.send(ROW))
        await asyncio.sleep(0.05)
        assert not sent.done()
        assert len(client.model.threads) == calls  # not called meanwhile
        release.set()
        await held
        thread, answer = await sent
        assert thread == threading.current_thread().name
        assert answer.endswith(b"[6.0]")

    asyncio.run(main())


def test_a_request_waits_for_busy_workers_only_so_long_then_joins_their_queue() -> None:
    """Workers that stay busy (a slow call, another model's traffic) do not hold a
    request that could run inline back behind work that comes after it: after the idle
    wait it is queued for them, and runs on a worker."""

    async def main() -> None:
        client = serving(idle_wait_s=0.01)
        for _ in range(LEARN + 1):
            await client.send(ROW)
        runner = client.app.runner
        release = threading.Event()
        held = runner.submit(release.wait)
        sent = asyncio.ensure_future(client.send(ROW))
        async with asyncio.timeout(30):
            while runner.in_flight < 2:  # it gave up waiting and joined the queue
                await asyncio.sleep(0.005)
        release.set()
        await held
        thread, answer = await sent
        assert thread == "model-0"
        assert answer.endswith(b"[6.0]")

    asyncio.run(main())


def test_with_a_worker_free_a_request_goes_to_it_rather_than_wait() -> None:
    """SAGEMAKER_MODEL_SERVER_WORKERS=2, one of them busy: the request runs on the other
    at once, never inline beside the busy one."""

    async def main() -> None:
        client = serving(workers=2)
        for _ in range(LEARN + 1):
            await client.send(ROW)
        release = threading.Event()
        held = client.app.runner.submit(release.wait)
        async with asyncio.timeout(30):  # answered while the other is held
            thread, answer = await client.send(ROW)
        assert thread.startswith("model-")
        assert answer.endswith(b"[6.0]")
        release.set()
        await held

    asyncio.run(main())


def test_under_steady_concurrency_the_calls_end_up_on_the_loop() -> None:
    """Eight clients, each sending as soon as its answer is in (the router's connections
    to a busy instance), from the model's first call: once it has shown its calls are
    short, they all run inline, each client's answers right and in order."""

    async def main() -> None:
        client = serving()

        async def one_client(index: int) -> list[str]:
            threads = []
            for sent in range(30):
                thread, answer = await client.send([[float(index), float(sent)]])
                assert answer.endswith(f"[{index + sent:.1f}]".encode())
                threads.append(thread)
            return threads

        seen = await asyncio.gather(*(one_client(i) for i in range(8)))
        loop_thread = threading.current_thread().name
        assert {threads[-1] for threads in seen} == {loop_thread}
        assert client.app.runner.in_flight == 0

    asyncio.run(main())


def test_the_gate_relearns_after_a_slow_call_within_its_limit() -> None:
    gate = InlineGate(1.0)
    short = 0.0001
    for _ in range(LEARN):
        gate.observe(100, short, short, inline=False)
    assert gate.allows(100) and not gate.allows(101)
    gate.observe(1000, 0.01, 0.01, inline=False)  # a bigger body was slow: the limit stands
    assert gate.allows(100)
    gate.observe(50, 0.002, 0.002, inline=False)  # a body within it was slow: relearn
    assert not gate.allows(50)
    for _ in range(LEARN - 1):
        gate.observe(80, short, short, inline=False)
    assert not gate.allows(80)
    gate.observe(80, short, short, inline=False)
    assert gate.allows(80) and not gate.allows(81)
    # Slow, but not slow enough to give up on inline calls: relearn, not off.
    gate.observe(80, NEVER_AGAIN_S / 2, NEVER_AGAIN_S / 2, inline=True)
    assert not gate.off and not gate.allows(80)


def test_a_thread_call_that_waited_for_the_gil_still_counts_as_short() -> None:
    """Wall time on a thread includes waiting for the loop to let go of the GIL; what
    the call used of a CPU is what says whether it is short."""
    gate = InlineGate(1.0)
    for _ in range(LEARN):
        gate.observe(100, 0.004, 0.0002, inline=False)
    assert gate.allows(100)
    gate = InlineGate(1.0)
    for _ in range(LEARN):  # far longer than any GIL wait: not short, whatever its CPU
        gate.observe(100, 0.04, 0.0002, inline=False)
    assert not gate.allows(100)
