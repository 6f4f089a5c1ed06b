"""Multi-model endpoints: `InvokeEndpoint(TargetModel=key)` on a variant whose model has
`Mode=MultiModel` serves the model `<ModelDataUrl><key>`, loaded on demand.

What SageMaker does, here: a model's requests go to an instance that has it loaded (the
least busy of them); a model loaded nowhere goes to the instance rendezvous hashing picks
for it, so concurrent first requests for one model meet on one instance and load it once.
On a miss the router unpacks the artifact (once per endpoint model folder, shared by the
variant's instances, off the event loop, with the safe unpacking of
:mod:`modelhost.storage.archive`) and asks the instance to load it from there through the
multi-model container contract (`POST /models`). Each instance keeps a cache bounded by
its memory (the instance answers 507 when full; the router then unloads its least recently
used model and asks again) and, where the model's Environment sets
`MODELHOST_MAX_LOADED_MODELS`, by a count. A model some request is using is never unloaded
under it.

Only requests that carry TargetModel come here: the single-model path is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import re
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import orjson

from modelhost import metrics
from modelhost.errors import InvocationValidationError, ModelError, ServiceUnavailable
from modelhost.instances import InstanceClient, InstanceUnreachable, Response
from modelhost.router.pool import Replica, VariantPool
from modelhost.storage import ObjectStore, UnsafeArchiveError, prepare_model_dir

#: In a multi-model model's Environment: at most this many models loaded per instance.
ENV_MAX_LOADED = "MODELHOST_MAX_LOADED_MODELS"
#: Passed on to the container with every /models request, as SageMaker does (for logs).
TARGET_MODEL_HEADER = b"X-Amzn-SageMaker-Target-Model"
_JSON = (b"Content-Type", b"application/json")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_TARGET = 1024


@dataclass(frozen=True, eq=False)
class ModelSource:
    """Where a multi-model variant's models come from and go to."""

    prefix: str  # the model's ModelDataUrl, ending in "/"
    root: Path  # the host folder they are unpacked into, one subfolder each
    objects: ObjectStore
    max_bytes: int
    max_loaded: int | None = None
    download_timeout_s: float | None = None
    _unpacking: dict[str, asyncio.Future[Path]] = field(default_factory=dict, repr=False)


@dataclass(eq=False)
class _Cache:
    """What one instance has loaded, least recently used first."""

    series: tuple[str, str, str]  # endpoint, variant, instance
    loaded: OrderedDict[str, None] = field(default_factory=OrderedDict)
    loading: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    busy: dict[str, int] = field(default_factory=dict)  # requests using each model

    def __post_init__(self) -> None:
        # Bound once: a cache hit costs two increments, no label lookups.
        self.lookups = metrics.MODEL_CACHE_LOOKUPS.labels(*self.series)
        self.hits = metrics.MODEL_CACHE_HIT.labels(*self.series)

    def count(self) -> None:
        metrics.LOADED_MODEL_COUNT.labels(*self.series).set(len(self.loaded))


def not_multi_model(endpoint: str) -> InvocationValidationError:
    return InvocationValidationError(
        f"Endpoint {endpoint} is not a multi-model endpoint and does not support target "
        "model header."
    )


def missing_target_model(endpoint: str) -> InvocationValidationError:
    return InvocationValidationError(
        f"Endpoint {endpoint} is a multi-model endpoint: the request is missing a target "
        "model header (TargetModel)."
    )


def check_target(target: str) -> str:
    """A key under the prefix, or ValidationError: never a way out of it."""
    parts = target.split("/")
    if (
        not target
        or len(target) > _MAX_TARGET
        or target.startswith("/")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
        or any(p in ("", ".", "..") for p in parts)
        or "://" in target
    ):
        raise InvocationValidationError(
            f"TargetModel {target[:128]!r} is not a key under the endpoint's model prefix: "
            "give a relative key such as model-7.tar.gz, without '..', '.' or empty parts."
        )
    return target


def local_name(target: str) -> str:
    """The model's folder and `model_name` in the instance: readable and collision-free."""
    digest = hashlib.sha256(target.encode()).hexdigest()[:12]
    readable = _UNSAFE_NAME.sub("_", target.removesuffix(".tar.gz"))[:64].strip("._") or "m"
    return f"{readable}-{digest}"


@dataclass(frozen=True, slots=True)
class _Route:
    """What a request for one TargetModel sends, worked out once per target."""

    name: str  # local_name(target)
    path: bytes  # POST here to predict with it
    header: tuple[bytes, bytes]  # TargetModel, passed on to the container


@functools.lru_cache(maxsize=4096)
def _route(target: str) -> _Route:
    """The checked target's route. Remembered for the models asked for most, so a cache
    hit checks, hashes, quotes and encodes nothing (a refused target raises, which is not
    remembered)."""
    name = local_name(check_target(target))
    return _Route(
        name, f"/models/{quote(name)}/invoke".encode(), (TARGET_MODEL_HEADER, target.encode())
    )


def _rendezvous(replica: Replica, name: str) -> int:
    key = f"{replica.instance.spec.instance_id}|{name}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


class ModelRouting:
    """The per-instance model caches of every multi-model variant the router serves."""

    def __init__(self, client: InstanceClient, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._caches: weakref.WeakKeyDictionary[Replica, _Cache] = weakref.WeakKeyDictionary()

    def cache(self, endpoint: str, replica: Replica) -> _Cache:
        cache = self._caches.get(replica)
        if cache is None:
            series = (endpoint, replica.variant, replica.instance.spec.instance_id)
            cache = self._caches[replica] = _Cache(series)
            # The series ends with the instance.
            weakref.finalize(replica, _forget_series, series)
            cache.count()
        return cache

    def choose(
        self, pool: VariantPool, name: str, exclude: Replica | None = None
    ) -> Replica | None:
        best: Replica | None = None
        for replica in pool.replicas:
            if not replica.serving or replica is exclude:
                continue
            cache = self._caches.get(replica)
            has = cache is not None and (name in cache.loaded or name in cache.loading)
            if has and (best is None or replica.outstanding < best.outstanding):
                best = replica
        if best is not None:
            return best
        serving = [r for r in pool.replicas if r.serving and r is not exclude]
        return max(serving, key=lambda r: _rendezvous(r, name)) if serving else None

    async def invoke(
        self,
        endpoint: str,
        pool: VariantPool,
        source: ModelSource,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> tuple[Response, Replica, float]:
        """The instance's answer to the request for `target`, the replica that gave it, and
        the seconds it took to predict (loading not counted)."""
        route = _route(target)
        name = route.name
        # The instance's request, built once for both tries.
        sent = [*headers, route.header]
        replica = self.choose(pool, name)
        if replica is None:
            raise ServiceUnavailable(
                f"No healthy instance is available for endpoint {endpoint}; try again shortly."
            )
        try:
            return await self._on(endpoint, replica, source, target, route, sent, body)
        except InstanceUnreachable:
            replica.healthy = False
        # It never answered: once more, on another instance.
        retry = self.choose(pool, name, exclude=replica)
        if retry is None:
            raise ServiceUnavailable(
                f"Endpoint {endpoint}: the instance failed to answer; try again shortly."
            )
        try:
            return await self._on(endpoint, retry, source, target, route, sent, body)
        except InstanceUnreachable as exc:
            retry.healthy = False
            raise ServiceUnavailable(
                f"Endpoint {endpoint}: instances failed to answer ({exc})."
            ) from None

    async def _on(
        self,
        endpoint: str,
        replica: Replica,
        source: ModelSource,
        target: str,
        route: _Route,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> tuple[Response, Replica, float]:
        """`headers` are the instance's (TargetModel included)."""
        name = route.name
        cache = self.cache(endpoint, replica)
        series = cache.series
        cache.lookups.inc()
        busy = cache.busy
        busy[name] = busy.get(name, 0) + 1
        replica.acquire()
        try:
            if name in cache.loaded:
                cache.loaded.move_to_end(name)
                cache.hits.inc()
            else:
                waited = time.perf_counter()
                loading = cache.loading.get(name)
                if loading is None:
                    loading = asyncio.ensure_future(
                        self._load(replica, cache, source, target, name)
                    )
                    cache.loading[name] = loading
                    loading.add_done_callback(lambda _: cache.loading.pop(name, None))
                await asyncio.shield(loading)
                metrics.MODEL_LOADING_WAIT_TIME.labels(*series).observe(
                    time.perf_counter() - waited
                )
            started = time.perf_counter()
            try:
                response = await self._client.request(
                    replica.address,
                    b"POST",
                    route.path,
                    headers,
                    body,
                    self._timeout_s,
                )
            except TimeoutError:
                replica.timeouts.append(time.monotonic())
                raise ModelError(
                    f"Your invocation timed out while waiting for a response from model "
                    f"{target}: it took longer than {self._timeout_s:g} s.",
                    OriginalStatusCode=504,
                    OriginalMessage="model timeout",
                ) from None
            if response.status == 404:  # the instance lost it (restarted under us)
                cache.loaded.pop(name, None)
                cache.count()
            return response, replica, time.perf_counter() - started
        finally:
            replica.release()
            if busy[name] == 1:
                del busy[name]
            else:
                busy[name] -= 1

    async def _load(
        self, replica: Replica, cache: _Cache, source: ModelSource, target: str, name: str
    ) -> None:
        folder = await self._unpacked(source, target, name)
        inside = Path(getattr(replica.instance, "model_mount", source.root)) / folder.name
        if source.max_loaded is not None:
            while len(cache.loaded) >= source.max_loaded and await self._evict(replica, cache):
                pass
        started = time.perf_counter()
        request = orjson.dumps({"model_name": name, "url": str(inside)})
        headers = [_JSON, (TARGET_MODEL_HEADER, target.encode())]
        while True:
            response = await self._client.request(
                replica.address, b"POST", b"/models", headers, request, self._timeout_s
            )
            if response.status in (200, 409):  # 409: it had it already
                break
            if response.status == 507 and await self._evict(replica, cache):
                continue
            message = response.body.decode(errors="replace")[:1024]
            raise ModelError(
                f"Failed to load model {target}: received error ({response.status}) from "
                f'the instance with message "{message}". See the instance log for details.',
                OriginalStatusCode=response.status,
                OriginalMessage=message,
            )
        metrics.MODEL_LOADING_TIME.labels(*cache.series).observe(time.perf_counter() - started)
        cache.loaded[name] = None
        cache.count()

    async def _evict(self, replica: Replica, cache: _Cache) -> bool:
        """Unload the least recently used model no request is using; False if none."""
        victim = next((n for n in cache.loaded if n not in cache.busy), None)
        if victim is None:
            return False
        del cache.loaded[victim]
        cache.count()
        metrics.MODEL_UNLOADS.labels(*cache.series).inc()
        await self._client.request(
            replica.address,
            b"DELETE",
            f"/models/{quote(victim)}".encode(),
            [],
            b"",
            self._timeout_s,
        )
        return True

    async def _unpacked(self, source: ModelSource, target: str, name: str) -> Path:
        """The model's folder on the host, unpacked once for all the variant's instances."""
        dest = source.root / name
        if dest.is_dir():
            return dest
        pending = source._unpacking.get(name)
        if pending is None:
            pending = asyncio.ensure_future(self._unpack(source, target, dest))
            source._unpacking[name] = pending
            pending.add_done_callback(lambda _: source._unpacking.pop(name, None))
        return await asyncio.shield(pending)

    async def _unpack(self, source: ModelSource, target: str, dest: Path) -> Path:
        url = source.prefix + target
        try:
            await asyncio.to_thread(
                prepare_model_dir,
                source.objects,
                url,
                dest,
                source.max_bytes,
                timeout_s=source.download_timeout_s,
            )
        except FileNotFoundError:
            raise InvocationValidationError(
                f"Failed to download model data (TargetModel {target}, {url}). Please ensure "
                "that there is an object located at the URL."
            ) from None
        except (UnsafeArchiveError, ValueError, OSError) as exc:  # ModelDataTimeout too
            raise ModelError(
                f"Failed to load model {target}: its model data was refused ({exc}).",
                OriginalStatusCode=400,
                OriginalMessage=str(exc)[:1024],
            ) from None
        return dest


def _forget_series(series: tuple[str, str, str]) -> None:
    for metric in metrics.PER_INSTANCE_MODEL_METRICS:
        with contextlib.suppress(KeyError):
            metric.remove(*series)
