"""Adaptive batching in process: the real handlers, runner and batcher around a model that
records each call's rows and can be held inside a call, so that which requests queue up
behind a running batch is decided by the test, never by timing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import orjson
import pytest

from modelhost.modelserver.batching import Batcher
from modelhost.modelserver.errors import BadRequestError, StartupError
from modelhost.modelserver.frameworks import FRAMEWORKS
from modelhost.modelserver.handlers import Handlers
from modelhost.modelserver.runner import ModelRunner
from modelhost.modelserver.server import batcher_for
from modelhost.modelserver.settings import BATCH_SIZE_HEADER, QUEUE_WAIT_HEADER, Settings

JSON = "application/json"
#: Long enough that a request held for it would hang the test rather than pass.
NEVER_S = 600.0


class RowModel:
    """predict: each row's sum, refusing rows with a negative value; records every call's
    row count, and holds a call while `hold` is set until `gate` opens."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.hold = False
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def predict(self, data: np.ndarray) -> np.ndarray:
        self.calls.append(len(data))
        if self.hold:
            self.entered.release()
            self.gate.wait()
        if (data < 0).any():
            raise ValueError("negative feature")
        return data.sum(axis=1)


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """An async test as a plain one, on a loop of its own."""

    def run() -> None:
        asyncio.run(test())

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


def body(*rows: list[float]) -> bytes:
    return orjson.dumps(list(rows))


async def entered(model: RowModel) -> None:
    await asyncio.to_thread(model.entered.acquire)


async def answers(futures: list[asyncio.Future[Any]]) -> list[Any]:
    return await asyncio.gather(*futures, return_exceptions=True)


async def held_first(batcher: Batcher, model: RowModel) -> asyncio.Future[Any]:
    """Submits one request and returns once the model is held inside its call, no longer
    holding later calls: what is submitted next queues up behind it until `gate` opens."""
    model.hold = True
    first = batcher.submit(body([1, 1]), JSON, None, None)
    await entered(model)
    model.hold = False
    return first


def make(
    model: Any,
    max_size: int = 8,
    delay_s: float = NEVER_S,
    workers: int = 1,
    framework: str = "sklearn",
    **fns: Any,
) -> Batcher:
    handlers = Handlers(model, FRAMEWORKS[framework], "/model", **fns)
    return Batcher(handlers, ModelRunner(workers), workers, max_size, delay_s)


@in_loop
async def test_requests_queued_behind_a_call_share_the_next_call_in_order():
    model = RowModel()
    batcher = make(model)
    first = await held_first(batcher, model)
    rest = [batcher.submit(body([i, 0], [i, 10]), JSON, None, None) for i in range(5)]
    model.gate.set()
    results = await answers([first, *rest])
    # Two model calls: the first request alone, then all five waiting ones at once.
    assert model.calls == [1, 10]
    assert [r[0] for r in results] == [b"[2]"] + [orjson.dumps([i, i + 10]) for i in range(5)]
    assert results[1][2][1] == (BATCH_SIZE_HEADER, b"5")
    assert all(BATCH_SIZE_HEADER not in dict(r[2]) for r in results[2:])
    assert all(QUEUE_WAIT_HEADER in dict(r[2]) for r in results)


@in_loop
async def test_batches_never_exceed_the_size():
    model = RowModel()
    batcher = make(model, max_size=3)
    first = await held_first(batcher, model)
    rest = [batcher.submit(body([i, 0]), JSON, None, None) for i in range(7)]
    model.gate.set()
    await answers([first, *rest])
    assert model.calls == [1, 3, 3, 1]


@in_loop
async def test_a_request_to_an_idle_model_is_not_held():
    """With a delay that would hang the test, one request after another each goes at
    once, alone."""
    model = RowModel()
    batcher = make(model, delay_s=NEVER_S)
    for i in range(4):
        result, content_type, headers = await batcher.submit(body([i, i]), JSON, None, None)
        assert (result, content_type) == (orjson.dumps([2 * i]), JSON)
        assert dict(headers)[BATCH_SIZE_HEADER] == b"1"
    assert model.calls == [1, 1, 1, 1]


@in_loop
async def test_one_bad_request_fails_alone():
    model = RowModel()
    batcher = make(model)
    first = await held_first(batcher, model)
    rows = [[1, 2], [3, 4], [-1, 5], [6, 7], [8, 9]]
    rest = [batcher.submit(body(row), JSON, None, None) for row in rows]
    rest.append(batcher.submit(b"{not json", JSON, None, None))
    model.gate.set()
    results = await answers([first, *rest])
    assert [r[0] for r in results[1:3]] == [b"[3]", b"[7]"]
    assert isinstance(results[3], ValueError)
    assert [r[0] for r in results[4:6]] == [b"[13]", b"[17]"]
    assert isinstance(results[6], BadRequestError)  # never reached the model
    # The batch of five, then halves until the bad one is alone: [2] passes, [3] fails,
    # then [1] (the bad one) and [2].
    assert model.calls == [1, 5, 2, 3, 1, 2]


@in_loop
async def test_rows_stack_only_with_the_same_width_and_type():
    model = RowModel()
    batcher = make(model)
    first = await held_first(batcher, model)
    rest = [
        batcher.submit(body([1, 2]), JSON, None, None),
        batcher.submit(b"1,2,3\n", "text/csv", None, None),
        batcher.submit(body([3, 4]), JSON, None, None),
        batcher.submit(b"4,5,6\n", "text/csv", None, None),
    ]
    model.gate.set()
    results = await answers([first, *rest])
    assert [r[:2] for r in results[1:]] == [
        (b"[3]", JSON),
        (b"6.0\n", "text/csv"),
        (b"[7]", JSON),
        (b"15.0\n", "text/csv"),
    ]
    assert model.calls == [1, 2, 2]  # JSON int rows of two, CSV float rows of three


@in_loop
async def test_a_model_that_does_not_answer_per_row_is_called_per_request():
    class Total(RowModel):
        def predict(self, data: np.ndarray) -> np.ndarray:
            super().predict(data)
            return np.asarray(data.sum())  # one value for any number of rows

    model = Total()
    batcher = make(model)
    first = await held_first(batcher, model)
    rest = [batcher.submit(body([i, 1], [i, 1]), JSON, None, None) for i in range(3)]
    model.gate.set()
    results = await answers([first, *rest])
    assert [r[0] for r in results[1:]] == [b"2", b"4", b"6"]
    assert model.calls == [1, 6, 2, 2, 2]


@in_loop
async def test_batch_predict_fn_gets_the_inputs_as_a_list():
    seen: list[int] = []
    gate = threading.Event()
    entered_call = threading.Semaphore(0)

    def batch_predict_fn(inputs: list[np.ndarray], model: Any) -> list[Any]:
        seen.append(len(inputs))
        if len(seen) == 1:
            entered_call.release()
            gate.wait()
        return [{"n": len(inputs), "first": x.tolist()[0]} for x in inputs]

    batcher = make(None, framework="python", batch_predict_fn=batch_predict_fn)
    first = batcher.submit(body([0]), JSON, None, None)
    await asyncio.to_thread(entered_call.acquire)
    rest = [batcher.submit(body([i]), JSON, None, None) for i in range(1, 4)]
    gate.set()
    results = await answers([first, *rest])
    assert seen == [1, 3]
    assert [orjson.loads(r[0]) for r in results] == [
        {"n": 1, "first": [0]},
        {"n": 3, "first": [1]},
        {"n": 3, "first": [2]},
        {"n": 3, "first": [3]},
    ]


def test_batch_predict_fn_alone_serves_unbatched_requests():
    handlers = Handlers(
        None,
        FRAMEWORKS["python"],
        "/model",
        batch_predict_fn=lambda inputs, model: [x * 2 for x in inputs],
    )
    assert handlers.invoke(b"[[1, 2]]", JSON, None) == (b"[[2,4]]", JSON)


@in_loop
async def test_a_wrong_number_of_predictions_fails_those_requests():
    def batch_predict_fn(inputs: list[Any], model: Any) -> list[Any]:
        return inputs[:-1]

    batcher = make(None, framework="python", batch_predict_fn=batch_predict_fn)
    with pytest.raises(ValueError, match="returned 0 predictions for 1 inputs"):
        await batcher.submit(body([1]), JSON, None, None)


@in_loop
async def test_with_several_workers_a_short_batch_waits_for_company():
    """One batch running and a worker free: the next requests wait until the batch is
    full (the delay here would hang the test), then go while the first is still held."""
    model = RowModel()
    batcher = make(model, max_size=3, workers=2)
    model.hold = True
    first = batcher.submit(body([1, 1]), JSON, None, None)
    await entered(model)
    rest = [batcher.submit(body([i, 0]), JSON, None, None) for i in range(3)]
    await entered(model)  # the second worker took the three, full
    assert model.calls == [1, 3]
    model.hold = False
    model.gate.set()
    await answers([first, *rest])


@in_loop
async def test_with_several_workers_the_delay_bounds_the_wait():
    model = RowModel()
    batcher = make(model, max_size=8, workers=2, delay_s=0.0)
    model.hold = True
    first = batcher.submit(body([1, 1]), JSON, None, None)
    await entered(model)
    second = batcher.submit(body([2, 2]), JSON, None, None)
    await entered(model)  # not full, but its delay (0) is up: it went to the free worker
    assert model.calls == [1, 1]
    model.hold = False
    model.gate.set()
    await answers([first, second])


@in_loop
async def test_a_request_whose_client_left_is_not_sent_to_the_model():
    model = RowModel()
    batcher = make(model)
    first = await held_first(batcher, model)
    gone = batcher.submit(body([5, 5]), JSON, None, None)
    kept = batcher.submit(body([2, 2]), JSON, None, None)
    gone.cancel()
    model.gate.set()
    results = await answers([first, kept])
    assert [r[0] for r in results] == [b"[2]", b"[4]"]
    assert model.calls == [1, 1]


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "size", "delay"),
    [
        ({}, 1, 5.0),
        ({"MODELHOST_MAX_BATCH_SIZE": "16"}, 16, 5.0),
        ({"MODELHOST_MAX_BATCH_SIZE": "8", "MODELHOST_MAX_BATCH_DELAY_MS": "2.5"}, 8, 2.5),
        ({"SAGEMAKER_TS_BATCH_SIZE": "4", "SAGEMAKER_TS_MAX_BATCH_DELAY": "100"}, 4, 100.0),
        ({"MODELHOST_MAX_BATCH_SIZE": "4", "SAGEMAKER_TS_BATCH_SIZE": "4"}, 4, 5.0),
        # A transform job's requests are mini-batches already: not batched again.
        ({"MODELHOST_MAX_BATCH_SIZE": "8", "SAGEMAKER_BATCH": "true"}, 1, 5.0),
    ],
)
def test_batch_settings(env: dict[str, str], size: int, delay: float):
    settings = Settings.from_env(env)
    assert (settings.max_batch_size, settings.max_batch_delay_ms) == (size, delay)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"MODELHOST_MAX_BATCH_SIZE": "many"}, "MODELHOST_MAX_BATCH_SIZE='many': not an integer"),
        ({"MODELHOST_MAX_BATCH_SIZE": "0"}, "must be >= 1"),
        ({"MODELHOST_MAX_BATCH_DELAY_MS": "soon"}, "not a number of milliseconds"),
        ({"SAGEMAKER_TS_MAX_BATCH_DELAY": "-1"}, "between 0 and 60000 ms"),
        ({"MODELHOST_MAX_BATCH_DELAY_MS": "nan"}, "between 0 and 60000 ms"),
        (
            {"MODELHOST_MAX_BATCH_SIZE": "4", "SAGEMAKER_TS_BATCH_SIZE": "8"},
            "disagree; set one of them",
        ),
    ],
)
def test_bad_batch_settings_name_the_variable(env: dict[str, str], reason: str):
    with pytest.raises(StartupError, match=reason):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("framework", "fns", "reason"),
    [
        ("sklearn", {"predict_fn": lambda data, model: data}, "predict_fn takes one request"),
        ("python", {}, "python framework's model has no batch form"),
        ("python", {"transform_fn": lambda m, b, c, a: b}, "transform_fn takes one request"),
    ],
)
def test_batching_handlers_without_a_batch_form_fail_at_startup(framework, fns, reason):
    handlers = Handlers(RowModel(), FRAMEWORKS[framework], "/model", **fns)
    settings = Settings(max_batch_size=4)
    with pytest.raises(StartupError, match=reason):
        batcher_for(settings, handlers, ModelRunner(1))


def test_without_batching_no_batcher():
    handlers = Handlers(RowModel(), FRAMEWORKS["python"], "/model")
    assert batcher_for(Settings(), handlers, ModelRunner(1)) is None


# --- the built-in frameworks' real models ---------------------------------------------------


def _alone_and_together(handlers: Handlers, requests: list[tuple[bytes, str, str]]) -> None:
    """invoke_batch answers each request exactly as invoke answers it alone."""
    together = handlers.invoke_batch([(b, c, a, None) for b, c, a in requests])
    for (request_body, content_type, accept), outcome in zip(requests, together, strict=True):
        try:
            alone: Any = handlers.invoke(request_body, content_type, accept)
        except Exception as exc:
            assert type(outcome) is type(exc)
        else:
            assert outcome == alone


def _mixed_requests(x: np.ndarray) -> list[tuple[bytes, str, str]]:
    return [
        (orjson.dumps(x[0:3].tolist()), JSON, JSON),
        ("\n".join(",".join(map(str, r)) for r in x[50:52].tolist()).encode(), "text/csv", JSON),
        (orjson.dumps(x[100:101].tolist()), JSON, "text/csv"),
        (b"1,2\n", "text/csv", JSON),  # two features: the model refuses it
        (orjson.dumps(x[140:145].tolist()), JSON, JSON),
    ]


def test_sklearn_rows_of_several_requests_in_one_call(iris, iris_model):
    x, _ = iris
    calls: list[int] = []

    class Counted:
        def predict(self, data: np.ndarray) -> np.ndarray:
            calls.append(len(data))
            return iris_model.predict(data)

    handlers = Handlers(Counted(), FRAMEWORKS["sklearn"], "/model")
    together = handlers.invoke_batch([(b, c, a, None) for b, c, a in _mixed_requests(x)])
    # The 9 JSON rows in one call; CSV's of four features in another, the refused row of
    # two features alone.
    assert calls == [9, 2, 1]
    assert isinstance(together[3], ValueError)
    _alone_and_together(handlers, _mixed_requests(x))


def test_onnx_rows_of_several_requests_in_one_call(iris, iris_model):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is not installed")
    import onnxruntime

    x, _ = iris
    onnx_model = skl2onnx.to_onnx(iris_model, np.asarray(x[:1], dtype=np.float32))
    session = onnxruntime.InferenceSession(
        onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    handlers = Handlers(session, FRAMEWORKS["onnx"], "/model")
    _alone_and_together(handlers, _mixed_requests(x))
    named = (orjson.dumps({"inputs": {"X": x[:2].tolist()}}), JSON, JSON)
    _alone_and_together(handlers, [named, *_mixed_requests(x)])
