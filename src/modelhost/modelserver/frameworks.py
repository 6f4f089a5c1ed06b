"""Built-in ``model_fn`` and ``predict_fn`` for each image: sklearn, onnx, python.

``MODELHOST_FRAMEWORK`` picks one, the way picking a SageMaker framework image picks its
default handlers. User code overrides any of them. ``input_fn``/``output_fn`` defaults are the
same for every framework (see :mod:`modelhost.modelserver.codecs`). Heavy libraries are
imported only by the framework that needs them, so a python image starts without sklearn and
an sklearn image without onnxruntime.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

ModelFn = Callable[[str], Any]
PredictFn = Callable[[Any, Any], Any]


@dataclass(frozen=True, slots=True)
class Framework:
    name: str
    #: None: the framework cannot load a model by itself (user code must, or there is none).
    model_fn: ModelFn | None
    predict_fn: PredictFn
    #: Whether the server refuses to start without user code.
    requires_user_code: bool = False
    #: Whether predict_fn answers row by row, so that requests' rows can be stacked into
    #: one call and its answer split back (batching).
    stacks_rows: bool = False


def find_model_file(model_dir: str, suffixes: tuple[str, ...], preferred: str) -> Path:
    """The one model file in ``model_dir`` (not recursive); ``preferred`` wins a tie."""
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"model directory {root} does not exist")
    if (root / preferred).is_file():
        return root / preferred
    found = sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith(suffixes))
    if not found:
        patterns = ", ".join(f"*{s}" for s in suffixes)
        raise FileNotFoundError(f"no model file ({patterns}) in {root}")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ValueError(
            f"several model files in {root} ({names}): name one {preferred} "
            "or load it in model_fn in code/inference.py"
        )
    return found[0]


def predict_generic(data: Any, model: Any) -> Any:
    """``model.predict(data)``, or ``model(data)`` for a plain callable."""
    predict = getattr(model, "predict", None)
    if predict is not None:
        return predict(data)
    if callable(model):
        return model(data)
    raise TypeError(
        f"the model ({type(model).__name__}) has no predict method and is not callable; "
        "define predict_fn in inference.py"
    )


def can_predict_generic(model: Any) -> bool:
    return callable(getattr(model, "predict", None)) or callable(model)


# --- sklearn ---------------------------------------------------------------------------------

SKLEARN_SUFFIXES = (".joblib", ".pkl", ".pickle")


def sklearn_model_fn(model_dir: str) -> Any:
    """Load the single ``*.joblib``/``*.pkl``/``*.pickle`` file (``model.joblib`` preferred)."""
    import joblib

    path = find_model_file(model_dir, SKLEARN_SUFFIXES, "model.joblib")
    try:
        return joblib.load(path)
    except Exception as joblib_error:
        # joblib reads plain pickles too; this catches the odd pickle joblib's reader rejects.
        try:
            with path.open("rb") as f:
                return pickle.load(f)
        except Exception:
            raise joblib_error from None


def sklearn_predict_fn(data: Any, model: Any) -> Any:
    return model.predict(data)


# --- onnx ------------------------------------------------------------------------------------

_ONNX_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.str_,
}


def onnx_model_fn(model_dir: str) -> Any:
    """An onnxruntime CPU session on the single ``*.onnx`` file (``model.onnx`` preferred).

    Intra-op threads follow ``OMP_NUM_THREADS`` when the launcher set it, so an instance uses
    its vCPU share and no more.
    """
    import onnxruntime as ort

    path = find_model_file(model_dir, (".onnx",), "model.onnx")
    options = ort.SessionOptions()
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True, slots=True)
class _OnnxSignature:
    inputs: tuple[tuple[str, Any], ...]  # (name, numpy dtype)
    first_output: str


@lru_cache(maxsize=8)
def _onnx_signature(session: Any) -> _OnnxSignature:
    inputs = tuple((i.name, _ONNX_DTYPES.get(i.type)) for i in session.get_inputs())
    return _OnnxSignature(inputs=inputs, first_output=session.get_outputs()[0].name)


def onnx_predict_fn(data: Any, model: Any) -> Any:
    """Feed the array to the model's input (cast to its dtype); return the first output.

    For skl2onnx classifiers the first output is the label, the second the probabilities; only
    the first is computed into Python. A dict of arrays feeds several named inputs.
    """
    if not hasattr(model, "get_inputs"):
        return predict_generic(data, model)
    sig = _onnx_signature(model)
    if isinstance(data, dict):
        dtypes = dict(sig.inputs)
        feed = {name: _cast(value, dtypes.get(name)) for name, value in data.items()}
    else:
        if len(sig.inputs) != 1:
            names = ", ".join(name for name, _ in sig.inputs)
            raise ValueError(
                f"the model has {len(sig.inputs)} inputs ({names}); "
                'send {"inputs": {name: rows, ...}}'
            )
        name, dtype = sig.inputs[0]
        feed = {name: _cast(data, dtype)}
    return model.run([sig.first_output], feed)[0]


def _cast(value: Any, dtype: Any) -> np.ndarray:
    return np.ascontiguousarray(value, dtype=dtype) if dtype is not None else np.asarray(value)


FRAMEWORKS: dict[str, Framework] = {
    "sklearn": Framework("sklearn", sklearn_model_fn, sklearn_predict_fn, stacks_rows=True),
    "onnx": Framework("onnx", onnx_model_fn, onnx_predict_fn, stacks_rows=True),
    "python": Framework("python", None, predict_generic, requires_user_code=True),
}
