"""Streamed answers in the model server: which thread runs a generator, how parts are
encoded, and closing a generator whose client went away."""

from __future__ import annotations

import asyncio
import threading

from modelhost.modelserver.frameworks import FRAMEWORKS
from modelhost.modelserver.handlers import Handlers, encode_part
from modelhost.modelserver.runner import ModelRunner
from modelhost.modelserver.streaming import is_stream, parts
from tests.support.processes import wait_until


def _threads_generator(seen: list[int], count: int):
    for i in range(count):
        seen.append(threading.get_ident())
        yield f"{i},"


def test_a_sync_generator_runs_on_one_worker_thread_from_start_to_end() -> None:
    runner = ModelRunner(4)
    seen: list[int] = []

    async def collect() -> list[bytes]:
        return [
            data
            async for data in parts(
                _threads_generator(seen, 50), runner, lambda item: encode_part(item, "text/plain")
            )
        ]

    try:
        assert asyncio.run(collect()) == [f"{i},".encode() for i in range(50)]
    finally:
        runner.shutdown()
    assert len(set(seen)) == 1
    assert seen[0] != threading.get_ident()


def test_an_abandoned_stream_closes_its_generator_on_its_thread() -> None:
    runner = ModelRunner(2)
    closed_on: list[int] = []
    ran_on: list[int] = []

    def endless():
        try:
            while True:
                ran_on.append(threading.get_ident())
                yield b"x"
        finally:
            closed_on.append(threading.get_ident())

    async def take_two() -> None:
        produced = parts(endless(), runner, bytes)
        assert await anext(produced) == b"x"
        assert await anext(produced) == b"x"
        await produced.aclose()

    try:
        asyncio.run(take_two())
        wait_until(lambda: closed_on, timeout_s=10, what="the generator to be closed")
    finally:
        runner.shutdown()
    assert closed_on == [ran_on[0]]


def test_predict_fn_generator_is_a_stream_and_its_items_encode_as_accept() -> None:
    def predict_fn(data, model):
        yield {"token": 1}
        yield "two"

    handlers = Handlers(None, FRAMEWORKS["python"], "/model", predict_fn=predict_fn)
    body, content_type = handlers.invoke(b"[1]", "application/json", "application/json")
    assert is_stream(body) and content_type == "application/json"
    assert [encode_part(item, content_type) for item in body] == [b'{"token":1}', b"two"]
    assert not is_stream(b"bytes") and not is_stream([1, 2])
