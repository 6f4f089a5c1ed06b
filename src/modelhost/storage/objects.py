"""The object store over fsspec: `s3://` URIs on the local disk or on a real S3.

SageMaker clients hand us S3 URIs. modelhost must work with no S3 at all (embedded
default), so `s3://bucket/key` maps to `<local_root>/<bucket>/<key>` on the local disk.
When an S3 endpoint is configured the way AWS tools expect (explicit URL,
`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, or `endpoint_url` in the shared AWS config),
the very same URIs go to that S3 through s3fs, so a deployment can switch between the two
without changing a single request. `file://` URIs and plain paths address the local
filesystem directly, but only where the operator allows it (`allow_local_paths`,
MODELHOST_ALLOW_LOCAL_PATHS): the URIs come from callers, and a local path would let any
caller who may create a model or invoke an endpoint read any file the server can read.

All methods are synchronous and blocking (s3fs drives its own event loop on a private
thread): code in the asyncio server should call them through `asyncio.to_thread` so a
slow bucket never stalls request handling.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import posixpath
import re
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import botocore.session
from botocore.configprovider import ConfiguredEndpointProvider
from botocore.exceptions import BotoCoreError
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from modelhost.storage.object_store import InvalidObjectURI

# Chunk size for streaming copies: big enough to amortise S3 round trips, small enough
# that copying a 20 GB model never holds more than this in memory.
COPY_CHUNK_BYTES = 1024 * 1024
# s3fs reads ahead in blocks of this size; its 50 MiB default is more than a streaming
# reader needs.
_S3_READ_BLOCK_BYTES = 8 * 1024 * 1024
# Local writes go to a hidden sibling with this suffix and are renamed into place on
# close, so a reader never sees half an object (S3 PUTs are atomic too).
_PARTIAL_SUFFIX = ".modelhost-partial"
# Loose S3 bucket naming (legacy names allowed); excludes ".", ".." and hidden names, so
# a bucket can never address anything but a plain folder under the local root.
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# Where an embedded object's Content-Type is kept.
_CONTENT_TYPE_XATTR = "user.modelhost.content-type"

_S3_SCHEME = "s3://"
_FILE_SCHEME = "file://"
# Longest file name and path local filesystems take (NAME_MAX, PATH_MAX on Linux): an S3
# key may hold longer segments, the embedded store cannot.
_NAME_MAX = 255
_PATH_MAX = 4095


def configured_s3_endpoint() -> str | None:
    """The S3 endpoint URL AWS tools would use from the environment, or None.

    Delegates to botocore's own resolution (the same code a `boto3.client("s3")` runs),
    so the order and the file format are exactly AWS's: `AWS_ENDPOINT_URL_S3`, then
    `AWS_ENDPOINT_URL`, then the `s3` entry of the profile's `services` section in the
    shared config file, then the profile's own `endpoint_url`. `AWS_PROFILE`,
    `AWS_CONFIG_FILE` and `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` are honoured.
    """
    session = botocore.session.Session()
    try:
        if session.get_config_variable("ignore_configured_endpoint_urls"):
            return None
        provider = ConfiguredEndpointProvider(
            full_config=session.full_config,
            scoped_config=session.get_scoped_config(),
            client_name="s3",
        )
        endpoint = provider.provide()
    except BotoCoreError as e:  # a missing profile, a services section that is absent
        raise ValueError(f"cannot read the S3 endpoint from the AWS configuration: {e}") from e
    return endpoint or None


@dataclass(frozen=True)
class _Target:
    """One URI resolved to the filesystem that holds it and the path there."""

    uri: str
    fs: AbstractFileSystem
    path: str
    # Turns a path on `fs` back into a URI in the caller's own style.
    to_uri: Callable[[str], str]
    # S3 lists by key prefix; local paths list by directory.
    key_prefix_listing: bool
    # The real local path, when the object lives on this machine.
    local_path: str | None


class FsspecObjectStore:
    """Read and write objects addressed by `s3://`, `file://` or plain-path URIs.

    `local_root` holds the embedded buckets (`<data-dir>/objects`). With
    `s3_endpoint_url` (or `real_s3=True`, meaning AWS's own S3) `s3://` URIs go to S3
    through s3fs instead, with credentials from the standard AWS chain. `file://` URIs
    and plain paths are refused (ValueError) unless `allow_local_paths`.
    """

    def __init__(
        self,
        local_root: Path | str,
        s3_endpoint_url: str | None = None,
        *,
        real_s3: bool = False,
        allow_local_paths: bool = False,
    ) -> None:
        self.local_root = Path(local_root).expanduser().resolve()
        self.s3_endpoint_url = s3_endpoint_url or None
        self.allow_local_paths = allow_local_paths
        self._local = LocalFileSystem()
        self._on_local_write: Callable[[], None] | None = None
        self._s3: AbstractFileSystem | None = None
        if self.s3_endpoint_url is not None or real_s3:
            import s3fs  # deferred: pulls in aiobotocore, only needed with real S3

            client_kwargs = {}
            if self.s3_endpoint_url is not None:
                client_kwargs["endpoint_url"] = self.s3_endpoint_url
            self._s3 = s3fs.S3FileSystem(
                client_kwargs=client_kwargs,
                # Objects are written by clients behind our back (inputs, models);
                # a cached listing would hide them.
                use_listings_cache=False,
                # Each store owns its filesystem, so two stores with different
                # settings (or environments, in tests) never share one.
                skip_instance_cache=True,
            )

    @property
    def uses_s3(self) -> bool:
        """Whether `s3://` URIs go to a real S3 service rather than the local root."""
        return self._s3 is not None

    def __repr__(self) -> str:
        if self._s3 is None:
            return f"FsspecObjectStore(local_root={str(self.local_root)!r})"
        return f"FsspecObjectStore(s3_endpoint_url={self.s3_endpoint_url or 'aws'!r})"

    def on_local_write(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the writing thread) each time an object lands under the
        local root: the embedded S3 API caches listings and must learn of objects that
        did not arrive through it."""
        self._on_local_write = callback

    # ------------------------------------------------------------------ resolution

    def _resolve(self, uri: str) -> _Target:
        if not isinstance(uri, str) or not uri:
            raise InvalidObjectURI(f"object URI must be a non-empty string, got {uri!r}")
        if "\x00" in uri:
            raise InvalidObjectURI(f"object URI {uri!r} contains a NUL character")
        if uri.startswith(_S3_SCHEME):
            return self._resolve_s3(uri)
        if not self.allow_local_paths and (
            uri.startswith(_FILE_SCHEME) or not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", uri)
        ):
            raise InvalidObjectURI(
                f"object URI {uri[:256]!r} is a local path; only s3:// URIs are accepted "
                "(an operator can allow local paths with MODELHOST_ALLOW_LOCAL_PATHS=1)"
            )
        if uri.startswith(_FILE_SCHEME):
            raw = uri[len(_FILE_SCHEME) :]
            if raw.startswith("localhost/"):
                raw = raw[len("localhost") :]
            path = os.path.abspath(raw)
            return _Target(
                uri,
                self._local,
                path,
                lambda p: _FILE_SCHEME + p,
                key_prefix_listing=False,
                local_path=path,
            )
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", uri):
            raise InvalidObjectURI(
                f"unsupported object URI {uri!r}: use s3://bucket/key, file:///path or a path"
            )
        path = os.path.abspath(uri)
        return _Target(
            uri, self._local, path, lambda p: p, key_prefix_listing=False, local_path=path
        )

    def _resolve_s3(self, uri: str) -> _Target:
        bucket, _, key = uri[len(_S3_SCHEME) :].partition("/")
        if not bucket:
            raise InvalidObjectURI(f"object URI {uri!r} names no bucket (expected s3://bucket/key)")
        if self._s3 is not None:
            s3 = self._s3
            path = f"{bucket}/{key}".rstrip("/") if key else bucket
            return _Target(
                uri, s3, path, lambda p: _S3_SCHEME + p, key_prefix_listing=True, local_path=None
            )
        # Embedded: s3://bucket/key -> <local_root>/<bucket>/<key>. A key is a path
        # here, so ".." would climb out of the bucket; S3 keys with ".." segments are
        # legal but cannot be mapped safely, so they are refused outright.
        if not _BUCKET_RE.match(bucket):
            raise InvalidObjectURI(f"object URI {uri!r}: invalid bucket name {bucket!r}")
        if ".." in key.split("/"):
            raise InvalidObjectURI(f"object URI {uri!r} escapes its bucket: '..' is not allowed")
        root = str(self.local_root)
        bucket_dir = f"{root}/{bucket}"
        path = posixpath.normpath(f"{bucket_dir}/{key}")
        if path != bucket_dir and not path.startswith(bucket_dir + "/"):
            raise InvalidObjectURI(f"object URI {uri!r} escapes its bucket")
        if len(path.encode()) > _PATH_MAX or any(
            len(part.encode()) > _NAME_MAX for part in f"{bucket}/{key}".split("/")
        ):
            raise InvalidObjectURI(
                f"object URI {uri[:256]!r} is too long for the embedded object store: a "
                f"bucket or key segment may have at most {_NAME_MAX} bytes"
            )

        def to_uri(p: str) -> str:
            return _S3_SCHEME + posixpath.relpath(p, root)

        return _Target(uri, self._local, path, to_uri, key_prefix_listing=True, local_path=path)

    # ------------------------------------------------------------------ queries

    def exists(self, uri: str) -> bool:
        """Whether an object, or any object under the prefix/folder, exists at `uri`."""
        t = self._resolve(uri)
        return bool(t.fs.exists(t.path))

    def is_file(self, uri: str) -> bool:
        """Whether `uri` names one object (as opposed to a prefix or nothing)."""
        t = self._resolve(uri)
        if uri.endswith("/"):
            return False
        return bool(t.fs.isfile(t.path))

    def size(self, uri: str) -> int:
        """Size in bytes of the object at `uri`."""
        t = self._resolve(uri)
        info = self._info(t)
        if info.get("type") != "file":
            raise IsADirectoryError(f"{uri} is a prefix/folder, not an object")
        return int(info["size"])

    def content_type(self, uri: str) -> str | None:
        """The object's Content-Type: S3's own metadata, or for an embedded object the
        one it was uploaded with through the S3 API (`record_content_type`)."""
        t = self._resolve(uri)
        if t.local_path is not None:
            try:
                return os.getxattr(t.local_path, _CONTENT_TYPE_XATTR).decode("latin-1") or None
            except OSError:  # none recorded, or a filesystem without user attributes
                return None
        value = self._info(t).get("ContentType")
        return str(value) if value else None

    def record_content_type(self, uri: str, content_type: str) -> None:
        """Keep an embedded object's Content-Type beside its bytes (a user extended
        attribute), as S3 keeps it; silently nothing where the filesystem has none."""
        t = self._resolve(uri)
        if t.local_path is None:
            return
        with contextlib.suppress(OSError):
            os.setxattr(t.local_path, _CONTENT_TYPE_XATTR, content_type.encode("latin-1")[:1024])

    def list(self, prefix_uri: str) -> list[str]:
        """URIs of all objects under `prefix_uri`, recursively, sorted.

        `s3://` URIs follow S3's key-prefix semantics (as SageMaker's `S3Prefix` does):
        `s3://b/data/` lists everything in the `data` folder, `s3://b/data` also matches
        `s3://b/data.csv` and `s3://b/database/x`. Local paths and `file://` URIs list a
        folder (or give the file itself). A prefix matching nothing gives [].
        """
        t = self._resolve(prefix_uri)
        if t.key_prefix_listing:
            key = prefix_uri[len(_S3_SCHEME) :].partition("/")[2]
            if key and not key.endswith("/"):
                paths = self._find_key_prefix(t)
            else:
                paths = self._find(t.fs, t.path)
        elif t.fs.isfile(t.path):
            paths = [t.path]
        else:
            paths = self._find(t.fs, t.path)
        uris = {t.to_uri(p) for p in paths if not _is_partial(p)}
        return sorted(uris)

    def _find_key_prefix(self, t: _Target) -> builtins.list[str]:
        parent, _, stem = t.path.rpartition("/")
        try:
            entries = t.fs.ls(parent, detail=True)
        except FileNotFoundError:
            return []
        found: list[str] = []
        for entry in entries:
            name = entry["name"].rstrip("/")
            if not name.rpartition("/")[2].startswith(stem):
                continue
            if entry.get("type") == "directory":
                found.extend(self._find(t.fs, name))
            else:
                found.append(name)
        return found

    @staticmethod
    def _find(fs: AbstractFileSystem, path: str) -> builtins.list[str]:
        try:
            return [p for p in fs.find(path) if not p.endswith("/")]
        except FileNotFoundError:
            return []

    def _info(self, t: _Target) -> dict[str, Any]:
        try:
            return t.fs.info(t.path)
        except (FileNotFoundError, NotADirectoryError):  # a "folder" that is an object
            raise _missing(t.uri) from None

    # ------------------------------------------------------------------ reading

    def open(self, uri: str, mode: str = "rb") -> IO[bytes]:
        """Open one object for streaming, in "rb" or "wb" mode.

        Writes land whole on close, as an S3 PUT does (locally via a hidden sibling and a
        rename); leaving a `with` block by an exception discards what was written, so a
        failed writer never leaves a plausible-looking partial result behind.
        """
        if mode not in ("rb", "wb"):
            raise ValueError(f"open mode must be 'rb' or 'wb', not {mode!r}")
        t = self._resolve(uri)
        if uri.endswith("/"):
            raise IsADirectoryError(f"{uri} is a prefix, not an object")
        if mode == "wb":
            if t.local_path is not None:
                under_root = t.local_path.startswith(f"{self.local_root}/")
                return _atomic_local_writer(
                    t.local_path, self._on_local_write if under_root else None
                )
            return _DiscardOnError(t.fs.open(t.path, "wb"))  # type: ignore[return-value]
        try:
            if t.local_path is not None:
                # A FIFO or device would block or never end: objects are regular files.
                if (
                    os.path.exists(t.local_path)
                    and not os.path.isdir(t.local_path)
                    and (not stat.S_ISREG(os.stat(t.local_path).st_mode))
                ):
                    raise ValueError(f"{uri} is not a regular file")
                return t.fs.open(t.path, "rb")
            return t.fs.open(t.path, "rb", block_size=_S3_READ_BLOCK_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            raise _missing(uri) from None
        except IsADirectoryError:
            raise IsADirectoryError(f"{uri} is a prefix/folder, not an object") from None

    def get_bytes(self, uri: str) -> bytes:
        """The whole object in memory; for small objects (payloads, manifests) only."""
        with self.open(uri, "rb") as f:
            return f.read()

    def put_bytes(self, uri: str, data: bytes) -> None:
        """Write a whole object, creating embedded buckets and folders as needed."""
        with self.open(uri, "wb") as f:
            f.write(data)


# ---------------------------------------------------------------------- helpers


def _missing(uri: str) -> FileNotFoundError:
    return FileNotFoundError(f"no object at {uri}")


def _is_partial(path: str) -> bool:
    return path.rpartition("/")[2].endswith(_PARTIAL_SUFFIX)


def safe_join(root: Path, rel: str, *, what: str) -> Path:
    """`root/rel`, refusing any `rel` that is absolute or climbs out with `..`.

    Checked lexically (no symlinks are followed), which is what matters for names that
    come from outside: S3 keys, archive members.
    """
    if not rel or rel.startswith("/") or "\x00" in rel or re.match(r"^[A-Za-z]:", rel):
        raise ValueError(f"{what} has an unsafe local name {rel!r}")
    norm = posixpath.normpath(rel)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise ValueError(f"{what} would land outside {root} ({rel!r})")
    return root / norm


def copy_stream(
    src: IO[bytes],
    dst: IO[bytes],
    *,
    limit: int | None = None,
    on_limit: Callable[[], Exception] | None = None,
) -> int:
    """Copy `src` to `dst` in chunks; stop as soon as more than `limit` bytes arrive."""
    total = 0
    while True:
        chunk = src.read(COPY_CHUNK_BYTES)
        if not chunk:
            return total
        total += len(chunk)
        if limit is not None and total > limit:
            raise on_limit() if on_limit else ValueError(f"more than {limit} bytes")
        dst.write(chunk)


class _AtomicWriter(io.BufferedWriter):
    """A buffered file that becomes visible at its final path only on a clean close."""

    def __init__(
        self, raw: io.FileIO, temp: str, final: str, landed: Callable[[], None] | None
    ) -> None:
        super().__init__(raw, buffer_size=COPY_CHUNK_BYTES)
        self._temp = temp
        self._final = final
        self._landed = landed
        self._discard = False

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        except BaseException:
            self._discard = True
            raise
        finally:
            if self._discard:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._temp)
            else:
                os.replace(self._temp, self._final)
                if self._landed is not None:
                    self._landed()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self._discard = True
        self.close()


class _DiscardOnError:
    """Wraps an s3fs write file so that an exception inside `with` uploads nothing.

    fsspec's own `__exit__` closes (and so uploads, or completes the multipart upload)
    whatever was buffered, error or not.
    """

    def __init__(self, f: Any) -> None:
        self._f = f

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _DiscardOnError:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self._f.close()
            return
        with contextlib.suppress(Exception):
            self._f.discard()  # aborts a multipart upload already begun
        self._f.closed = True  # so close() will not upload the buffer

    def write(self, data: bytes) -> int:
        return int(self._f.write(data))

    def close(self) -> None:
        self._f.close()


def _atomic_local_writer(path: str, landed: Callable[[], None] | None) -> IO[bytes]:
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, not an object")
    parent, _, name = path.rpartition("/")
    os.makedirs(parent or "/", exist_ok=True)
    # The hidden name must fit NAME_MAX too: a name of up to 255 bytes is a valid object.
    stem = name.encode()[:200].decode(errors="ignore")
    fd, temp = tempfile.mkstemp(dir=parent or "/", prefix=f".{stem}.", suffix=_PARTIAL_SUFFIX)
    # mkstemp creates 0600; objects should be readable like any file the user writes
    # (instances in containers may run as another user). Reading the umask would mean
    # briefly changing it, which races with other threads, so use the usual 0644.
    os.fchmod(fd, 0o644)
    return _AtomicWriter(io.FileIO(fd, "wb", closefd=True), temp, path, landed)
