"""SageMaker's multi-model container contract: models loaded and unloaded at run time.

``POST /models`` ``{"model_name", "url"}`` loads the model unpacked at ``url`` (a folder in
the instance: the router unpacked it there) with the same handler chain a single-model
server uses, ``GET /models`` and ``GET /models/{name}`` list what is loaded,
``DELETE /models/{name}`` unloads, ``POST /models/{name}/invoke`` predicts. The statuses
are the contract's: 409 for a model already loaded, 404 for one that is not, 507 when the
instance has no memory left for another model (the router then unloads its least recently
used one and asks again), 500 with the reason when the model itself fails to load.

Loading runs on a worker thread, so ``/ping`` and the other models keep answering while a
large model loads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path
from urllib.parse import unquote

import orjson

from modelhost.modelserver.errors import StartupError
from modelhost.modelserver.handlers import Handlers, load_handlers
from modelhost.modelserver.settings import Settings

log = logging.getLogger(__name__)

#: A new model is refused (507) once the process uses this share of its memory limit.
MEMORY_HIGH_WATER = 0.9
_PAGE = os.sysconf("SC_PAGE_SIZE")


class ModelsError(Exception):
    """A ``/models`` request answered with `status` and `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def resident_bytes() -> int:
    """This process's resident memory, read from /proc (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class ModelRegistry:
    """The models loaded in this instance, by the router's `model_name`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: dict[str, tuple[str, Handlers]] = {}
        self._loading: set[str] = set()

    def handlers(self, name: str) -> Handlers:
        loaded = self.models.get(name)
        if loaded is None:
            raise ModelsError(404, f"Model {name} is not loaded.")
        return loaded[1]

    def listing(self) -> bytes:
        return orjson.dumps(
            {"models": [{"modelName": n, "modelUrl": url} for n, (url, _) in self.models.items()]}
        )

    def describe(self, name: str) -> bytes:
        if name not in self.models:
            raise ModelsError(404, f"Model {name} is not loaded.")
        return orjson.dumps({"modelName": name, "modelUrl": self.models[name][0]})

    def unload(self, name: str) -> None:
        if self.models.pop(name, None) is None:
            raise ModelsError(404, f"Model {name} is not loaded.")
        log.info("unloaded model %s", name)

    async def load(self, body: bytes) -> None:
        try:
            request = orjson.loads(body)
            name, url = request["model_name"], request["url"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ModelsError(
                400, 'Expected a JSON body {"model_name": ..., "url": ...}.'
            ) from None
        if not isinstance(name, str) or not isinstance(url, str) or not name or "/" in name:
            raise ModelsError(400, "model_name and url must be strings; model_name has no '/'.")
        if name in self.models or name in self._loading:
            raise ModelsError(409, f"Model {name} is already loaded.")
        limit = self.settings.memory_limit_mb
        if limit and resident_bytes() > MEMORY_HIGH_WATER * limit * 1024 * 1024:
            raise ModelsError(507, f"No memory left for model {name}: unload another first.")
        if not Path(url).is_dir():
            raise ModelsError(404, f"Model {name}: nothing unpacked at {url}.")
        model_settings = dataclasses.replace(self.settings, model_dir=Path(url))
        self._loading.add(name)
        try:
            handlers = await asyncio.to_thread(load_handlers, model_settings)
        except MemoryError:
            raise ModelsError(507, f"Model {name} did not fit in memory.") from None
        except StartupError as exc:
            raise ModelsError(500, f"Model {name} failed to load: {exc}") from None
        finally:
            self._loading.discard(name)
        self.models[name] = (url, handlers)
        log.info("loaded model %s from %s", name, url)


def model_path(path: bytes) -> tuple[str, str] | None:
    """``/models/{name}`` → (name, ""), ``/models/{name}/invoke`` → (name, "invoke")."""
    parts = path.split(b"?", 1)[0].split(b"/")
    if len(parts) == 3 and parts[2]:
        return unquote(parts[2].decode("latin-1")), ""
    if len(parts) == 4 and parts[2] and parts[3] == b"invoke":
        return unquote(parts[2].decode("latin-1")), "invoke"
    return None
