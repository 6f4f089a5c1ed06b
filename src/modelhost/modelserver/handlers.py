"""Loading user code and running the handler chain for one request.

The contract is sagemaker-inference-toolkit's: ``model_fn(model_dir)``,
``input_fn(body, content_type)``, ``predict_fn(data, model)``, ``output_fn(prediction, accept)``,
or ``transform_fn(model, body, content_type, accept)`` in place of the last three. Each may
take a trailing ``context``; like the toolkit we look at the arity once, at load time, so the
per-request path is a few attribute reads and calls. Missing handlers fall back to the
framework's defaults.

With batching on (:mod:`modelhost.modelserver.batching`) several requests go through
:meth:`Handlers.invoke_batch` at once: each is decoded and encoded on its own, the model is
called once for all of them, through the built-in handlers' row stacking or the user's
``batch_predict_fn(inputs, model)``.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from modelhost.modelserver import codecs, preload
from modelhost.modelserver.context import Context
from modelhost.modelserver.errors import StartupError, describe
from modelhost.modelserver.frameworks import FRAMEWORKS, Framework, can_predict_generic
from modelhost.modelserver.settings import ENV_PROGRAM, Settings
from modelhost.modelserver.streaming import Stream, is_stream

log = logging.getLogger(__name__)

DEFAULT_PROGRAM = "inference.py"
HANDLER_NAMES = (
    "model_fn",
    "input_fn",
    "predict_fn",
    "batch_predict_fn",
    "output_fn",
    "transform_fn",
)
#: One request's answer in a batch: what :meth:`Handlers.invoke` returns, or what it raised.
Outcome = tuple[bytes | Stream, str] | Exception


@dataclass(frozen=True, slots=True)
class _Fn:
    """A handler and whether it wants the trailing ``context`` argument."""

    fn: Callable[..., Any]
    takes_context: bool

    @classmethod
    def of(cls, fn: Callable[..., Any], n_args: int) -> _Fn:
        return cls(fn, _takes_context(fn, n_args))

    def __call__(self, context: Context | list[Context | None] | None, *args: Any) -> Any:
        """``context`` is the request's, or for ``batch_predict_fn`` one per input."""
        if self.takes_context:
            return self.fn(*args, context)
        return self.fn(*args)


def _takes_context(fn: Callable[..., Any], n_args: int) -> bool:
    """The toolkit's rule: one positional parameter more than the contract's means context.

    Tightened for functions used directly as handlers (``model_fn = joblib.load``): an extra
    parameter with a default is taken as context only if it is named ``context``.
    """
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in params if p.kind in kinds]
    if len(positional) != n_args + 1:
        return False
    extra = positional[n_args]
    return extra.default is inspect.Parameter.empty or extra.name == "context"


class Handlers:
    """The loaded model and the handler chain that serves ``POST /invocations``."""

    def __init__(
        self,
        model: Any,
        framework: Framework,
        model_dir: str,
        *,
        input_fn: Callable[..., Any] | None = None,
        predict_fn: Callable[..., Any] | None = None,
        batch_predict_fn: Callable[..., Any] | None = None,
        output_fn: Callable[..., Any] | None = None,
        transform_fn: Callable[..., Any] | None = None,
        default_accept: str | None = None,
    ) -> None:
        self.model = model
        self.framework = framework
        self.model_dir = model_dir
        self.default_accept = default_accept
        self._input = _Fn.of(input_fn, 2) if input_fn else None
        self._batch_predict = _Fn.of(batch_predict_fn, 2) if batch_predict_fn else None
        if predict_fn is None and self._batch_predict is not None:
            self._predict = _Fn(self._predict_one, self._batch_predict.takes_context)
        else:
            self._predict = _Fn.of(predict_fn or framework.predict_fn, 2)
        self._output = _Fn.of(output_fn, 2) if output_fn else None
        self._transform = _Fn.of(transform_fn, 4) if transform_fn else None
        #: Requests' rows are stacked into one call of the framework's own predict_fn.
        self._stacks = predict_fn is None and batch_predict_fn is None and framework.stacks_rows
        used = (self._input, self._predict, self._batch_predict, self._output, self._transform)
        #: Build a :class:`Context` per request only when some handler reads it.
        self.needs_context = any(f is not None and f.takes_context for f in used)
        #: The framework's own chain alone (decode, predict row by row, encode): its calls
        #: take time in proportion to their rows, so a body's size tells how long the next
        #: call takes; user code's may depend on anything (see modelserver.inline).
        self.built_in = self._stacks and not (input_fn or output_fn or transform_fn)

    def invoke(
        self,
        body: bytes,
        content_type_header: str | None,
        accept_header: str | None,
        context: Context | None = None,
    ) -> tuple[bytes | Stream, str]:
        """Run the chain on one request; return the response body and its content type.
        The body is a :data:`Stream` when a handler returned a generator or iterator: its
        items are the parts of a streamed answer, each encoded by :func:`encode_part`.

        Raises whatever the handlers raise; errors carrying ``status_code`` choose the status.
        """
        content_type = codecs.media_type(content_type_header) or codecs.DEFAULT_CONTENT_TYPE
        if self._transform is not None:
            accept = codecs.requested_accept(accept_header, content_type, self.default_accept)
            data = _user_body(body, content_type)
            result = self._transform(context, self.model, data, content_type, accept)
            return _response(result, accept)

        data, accept = self._decode(body, content_type, accept_header, context)
        return self._encode(self._predict(context, data, self.model), accept, context)

    @property
    def batch_refusal(self) -> str | None:
        """Why these handlers cannot call the model once for several requests, or None."""
        if self._transform is not None:
            return "transform_fn takes one request's body; batching needs batch_predict_fn"
        if self._batch_predict is None and not self._stacks:
            if self.framework.stacks_rows:
                return "predict_fn takes one request; define batch_predict_fn(inputs, model)"
            return (
                f"the {self.framework.name} framework's model has no batch form; "
                "define batch_predict_fn(inputs, model)"
            )
        return None

    def invoke_batch(
        self, requests: list[tuple[bytes, str | None, str | None, Context | None]]
    ) -> list[Outcome]:
        """Run the chain on several requests with one model call; one outcome per request,
        in order. Decoding and encoding fail per request; when the model call fails, the
        batch is halved until the request it fails on is alone (as a transform job
        bisects a refused mini-batch), so the others still get their answers."""
        outcomes: list[Outcome] = []
        decoded: list[tuple[int, Any, str, Context | None]] = []
        content_types: list[str] = []
        for index, (body, content_type_header, accept_header, context) in enumerate(requests):
            content_type = codecs.media_type(content_type_header) or codecs.DEFAULT_CONTENT_TYPE
            content_types.append(content_type)
            try:
                data, accept = self._decode(body, content_type, accept_header, context)
            except Exception as exc:
                outcomes.append(exc)
                continue
            outcomes.append(_PENDING)
            decoded.append((index, data, accept, context))
        groups = _row_groups(decoded, content_types) if self._stacks else [decoded]
        for group in groups:
            for (index, _, accept, context), prediction in zip(
                group, self._predict_all(group), strict=True
            ):
                if isinstance(prediction, Exception):
                    outcomes[index] = prediction
                    continue
                try:
                    outcomes[index] = self._encode(prediction, accept, context)
                except Exception as exc:
                    outcomes[index] = exc
        return outcomes

    def _predict_all(self, group: list[tuple[int, Any, str, Context | None]]) -> list[Any]:
        """Predictions for a group of decoded requests (an Exception for each that fails)."""
        try:
            return self._predict_group(group)
        except Exception as exc:
            if len(group) == 1:
                return [exc]
        half = len(group) // 2
        return self._predict_all(group[:half]) + self._predict_all(group[half:])

    def _predict_group(self, group: list[tuple[int, Any, str, Context | None]]) -> list[Any]:
        if self._batch_predict is not None:
            inputs = [data for _, data, _, _ in group]
            return self._predict_many([context for _, _, _, context in group], inputs)
        if len(group) == 1:  # nothing to stack
            _, data, _, context = group[0]
            return [self._predict(context, data, self.model)]
        arrays = [data for _, data, _, _ in group]
        prediction = self._predict(None, np.concatenate(arrays), self.model)
        rows = sum(len(a) for a in arrays)
        if is_stream(prediction) or _length(prediction) != rows:
            # Not one answer per row: the model is not row-wise, so each request alone.
            return [self._predict(context, data, self.model) for _, data, _, context in group]
        parts, start = [], 0
        for array in arrays:
            parts.append(prediction[start : start + len(array)])
            start += len(array)
        return parts

    def _predict_one(self, data: Any, model: Any, context: Context | None = None) -> Any:
        """predict_fn for user code that defines only batch_predict_fn: a batch of one."""
        return self._predict_many([context], [data])[0]

    def _predict_many(self, contexts: list[Context | None], inputs: list[Any]) -> list[Any]:
        """batch_predict_fn's predictions, one per input, or an error saying it erred."""
        assert self._batch_predict is not None
        predictions = self._batch_predict(contexts, inputs, self.model)
        if is_stream(predictions) or _length(predictions) != len(inputs):
            raise ValueError(
                f"batch_predict_fn returned {_length(predictions)} predictions "
                f"for {len(inputs)} inputs"
            )
        return list(predictions)

    def _decode(
        self, body: bytes, content_type: str, accept_header: str | None, context: Context | None
    ) -> tuple[Any, str]:
        """The model's input for one request, and the type its answer will have."""
        if self._output is None:
            # Refuse an impossible Accept before spending time on the model.
            accept = codecs.negotiate(accept_header, content_type, self.default_accept)
        else:
            accept = codecs.requested_accept(accept_header, content_type, self.default_accept)
        if self._input is None:
            return codecs.decode(body, content_type), accept
        return self._input(context, _user_body(body, content_type), content_type), accept

    def _encode(
        self, prediction: Any, accept: str, context: Context | None
    ) -> tuple[bytes | Stream, str]:
        if self._output is None:
            if is_stream(prediction):
                return prediction, accept
            return codecs.encode(prediction, accept), accept
        return _response(self._output(context, prediction, accept), accept)


_PENDING = RuntimeError("no outcome")


def _row_groups(
    decoded: list[tuple[int, Any, str, Context | None]], content_types: list[str]
) -> list[list[tuple[int, Any, str, Context | None]]]:
    """Requests whose inputs stack into one array: arrays from the same content type with
    the same dtype and row shape (feature width). Anything else (a dict of named inputs, a
    single row of scalars) goes alone."""
    groups: dict[Any, list[tuple[int, Any, str, Context | None]]] = {}
    for item in decoded:
        data = item[1]
        if isinstance(data, np.ndarray) and data.ndim >= 2:
            key: Any = (content_types[item[0]], data.dtype.str, data.shape[1:])
        else:
            key = item[0]  # unique: alone
        groups.setdefault(key, []).append(item)
    return list(groups.values())


def _length(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


def _user_body(body: bytes, content_type: str) -> bytes | str:
    """The toolkit hands JSON and CSV bodies to user handlers as ``str``, others as bytes."""
    if content_type in codecs.UTF8_TYPES:
        return codecs.as_text(body)
    return body


def _response(result: Any, accept: str) -> tuple[bytes | Stream, str]:
    """A user handler's result: body, or ``(body, content_type)`` as the toolkit allows;
    the body may be a stream of parts."""
    content_type = accept
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], str):
        result, content_type = result
    if is_stream(result):
        return result, content_type
    if not isinstance(result, (bytes, str, bytearray, memoryview)) and (
        content_type not in codecs.ENCODERS
    ):
        content_type = codecs.JSON  # not encoded yet, and not as asked: JSON it is
    return encode_part(result, content_type), content_type


def encode_part(result: Any, content_type: str) -> bytes:
    """A whole answer or one part of a streamed one as bytes: bytes and str as they are,
    anything else encoded as `content_type` asks (JSON if we can't)."""
    if isinstance(result, bytes):
        return result
    if isinstance(result, str):
        return result.encode()
    if isinstance(result, (bytearray, memoryview)):
        return bytes(result)
    # Not encoded yet (an array, a dict): encode it as asked, JSON if we can't.
    return codecs.encode(result, content_type if content_type in codecs.ENCODERS else codecs.JSON)


# --- loading ---------------------------------------------------------------------------------


def find_user_module(settings: Settings) -> Path | None:
    """The user's handler module, or None when there is none (and none was asked for)."""
    code_dir = settings.code_dir
    if settings.program:
        name = settings.program if settings.program.endswith(".py") else f"{settings.program}.py"
        path = code_dir / name
        if not path.is_file():
            raise StartupError(f"{ENV_PROGRAM}={settings.program!r}: {path} does not exist")
        return path
    path = code_dir / DEFAULT_PROGRAM
    return path if path.is_file() else None


def import_user_module(path: Path) -> ModuleType:
    """Import ``path`` as a top-level module with its directory on ``sys.path``.

    Loading by file location rather than by name makes sure we get this file, not an installed
    module that happens to share its name; the directory on ``sys.path`` lets it import its
    siblings.
    """
    code_dir = str(path.parent)
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    if (path.parent / "requirements.txt").is_file():
        # The process backend installs it into the environment this interpreter is
        # (modelhost.instances.packages); other backends run with the image's packages.
        log.info("%s: packages come from %s", path.parent / "requirements.txt", sys.prefix)
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise StartupError(f"cannot import user code {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        raise StartupError(f"importing user code {path} failed: {describe(exc)}") from exc
    return module


def load_handlers(settings: Settings) -> Handlers:
    """Import user code, load the model, and check the chain can run; :class:`StartupError`."""
    preload.wait()  # no import may race the preload's: see modelhost.modelserver.preload
    framework = FRAMEWORKS[settings.framework]
    path = find_user_module(settings)
    if path is None and framework.requires_user_code:
        raise StartupError(
            f"framework {framework.name!r} needs user code, but there is no "
            f"{settings.code_dir / DEFAULT_PROGRAM} (or set {ENV_PROGRAM})"
        )
    user: dict[str, Callable[..., Any]] = {}
    if path is not None:
        module = import_user_module(path)
        for name in HANDLER_NAMES:
            fn = getattr(module, name, None)
            if fn is None:
                continue
            if not callable(fn):
                raise StartupError(f"{path.name}: {name} is not a function")
            user[name] = fn
        log.info("user code %s defines %s", path, ", ".join(user) or "no handlers")

    chain = {"input_fn", "predict_fn", "batch_predict_fn", "output_fn"}
    if "transform_fn" in user and user.keys() & chain:
        raise StartupError(
            f"{path.name if path else 'user code'} defines transform_fn together with "
            "input_fn/predict_fn/batch_predict_fn/output_fn; define one or the other"
        )

    model_dir = str(settings.model_dir)
    model_fn = user.get("model_fn") or framework.model_fn
    model: Any = None
    if model_fn is not None:
        started = time.perf_counter()
        try:
            model = _Fn.of(model_fn, 1)(Context(model_dir), model_dir)
        except BaseException as exc:
            raise StartupError(f"model_fn failed: {describe(exc)}") from exc
        log.info("model loaded in %.2f s (%s)", time.perf_counter() - started, type(model).__name__)

    if not user.keys() & {"transform_fn", "predict_fn", "batch_predict_fn"} and not (
        can_predict_generic(model) or hasattr(model, "get_inputs")  # an onnxruntime session
    ):
        raise StartupError(
            f"no predict_fn, batch_predict_fn or transform_fn in user code, and the model "
            f"({type(model).__name__}) has no predict method and is not callable"
        )

    return Handlers(
        model,
        framework,
        model_dir,
        input_fn=user.get("input_fn"),
        predict_fn=user.get("predict_fn"),
        batch_predict_fn=user.get("batch_predict_fn"),
        output_fn=user.get("output_fn"),
        transform_fn=user.get("transform_fn"),
        default_accept=settings.default_accept,
    )
