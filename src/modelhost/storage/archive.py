"""Turn a Model's `ModelDataUrl` into an unpacked model directory, safely.

A model archive comes from whoever can write to the bucket, so unpacking it is handling
untrusted input: a member named `../../home/x/.bashrc`, a symlink to `/etc`, a device
node or a small archive that inflates to terabytes must never harm the host. Each member
is checked here before anything is written (Python's `tarfile` "data" filter runs as a
second opinion, not as the only guard), the archive is unpacked into a fresh temporary
folder next to `dest` and renamed into place only when complete, so `dest` either holds
the whole model or is left untouched.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import IO, cast

from .object_store import ObjectStore
from .objects import copy_stream, safe_join

_DRIVE_RE = re.compile(r"^[A-Za-z]:($|[/\\])")
_FILE_MODE = 0o644
_EXEC_MODE = 0o755
_DIR_MODE = 0o755


class UnsafeArchiveError(ValueError):
    """The model data was refused: unsafe, too large, or not an archive at all."""


def prepare_model_dir(
    store: ObjectStore,
    model_data_url: str,
    dest: Path,
    max_bytes: int,
    *,
    compressed: bool | None = None,
    timeout_s: float | None = None,
) -> None:
    """Unpack or copy the model at `model_data_url` into `dest` (SageMaker's model dir).

    What `model_data_url` is decides what happens, as in SageMaker: one object is a
    model archive (`model.tar.gz`; gzip, bz2, xz or plain tar, detected from the bytes)
    streamed straight from the store and unpacked; a prefix (`S3Prefix`, compression
    None) is copied with its layout. `compressed=False` copies a single object as is
    (`S3Object` with compression None); `compressed=True` insists on an archive.

    At most `max_bytes` may land in `dest`, counted while writing so an archive bomb
    stops early. On success a previous `dest` is replaced; on any failure `dest` is left
    as it was and nothing partial remains. Raises `FileNotFoundError` when nothing is at
    the URL, `UnsafeArchiveError` when the data is refused, and `ModelDataTimeout` when
    reading it takes longer than `timeout_s` (SageMaker's ModelDataDownloadTimeoutInSeconds).
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    dest = Path(dest)
    is_object = check_model_data(store, model_data_url, compressed=compressed)
    prefix = model_data_url if model_data_url.endswith("/") else model_data_url + "/"

    dest.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as dest, so the final rename is atomic and nothing is written anywhere
    # else; hidden, so a listing of the models folder does not mistake it for a model.
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
    try:
        if is_object and compressed is False:
            _copy_object(
                store,
                model_data_url,
                staging,
                _Budget(max_bytes, model_data_url, deadline, timeout_s),
            )
        elif is_object:
            _unpack_archive(
                store,
                model_data_url,
                staging,
                _Budget(max_bytes, model_data_url, deadline, timeout_s),
            )
        else:
            _copy_prefix(store, prefix, staging, _Budget(max_bytes, prefix, deadline, timeout_s))
        os.chmod(staging, _DIR_MODE)
        _swap_into_place(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check_model_data(
    store: ObjectStore, model_data_url: str, *, compressed: bool | None = None
) -> bool:
    """Check that model data is at `model_data_url` without reading it (a HEAD, or a
    listing for a prefix): True for one object, False for a prefix. Raises as
    :func:`prepare_model_dir` does when nothing is there. For a backend whose instances
    unpack the data on their own node, this is all the server itself needs to read."""
    if store.is_file(model_data_url):
        return True
    if compressed:
        raise _missing_or(store, model_data_url, "is a prefix, not a model archive")
    prefix = model_data_url if model_data_url.endswith("/") else model_data_url + "/"
    if not store.list(prefix):
        raise FileNotFoundError(f"no model data at {model_data_url}")
    return False


def _missing_or(store: ObjectStore, url: str, problem: str) -> Exception:
    if not store.exists(url):
        return FileNotFoundError(f"no model data at {url}")
    return UnsafeArchiveError(f"model data {url} {problem}")


def _swap_into_place(staging: Path, dest: Path) -> None:
    """Rename the finished staging folder to `dest`, replacing an older model there."""
    old: Path | None = None
    if dest.exists() or dest.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, old / "model")
    try:
        os.replace(staging, dest)
    except BaseException:
        if old is not None:
            os.replace(old / "model", dest)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------- archives


def _unpack_archive(store: ObjectStore, url: str, root: Path, budget: _Budget) -> None:
    with store.open(url, "rb") as raw:
        source = _SourceReader(raw, budget)
        try:
            # "r|*": a forward-only stream with compression sniffed from the bytes, so
            # the object is read once, straight from the store, never downloaded first.
            with tarfile.open(fileobj=source, mode="r|*") as tar:  # type: ignore[call-overload]
                for member in tar:
                    _extract_member(tar, member, root, budget)
        except UnsafeArchiveError:
            raise
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as e:
            # Failing to read the object or to write the disk is an I/O problem, not a
            # bad archive; gzip/bz2 report corrupt data as OSErrors without an errno.
            if source.failed or (isinstance(e, OSError) and e.errno is not None):
                raise
            raise UnsafeArchiveError(f"model data {url} is not a valid tar archive ({e})") from e
    _check_links_stay_inside(root)


class _SourceReader:
    """A pass-through reader that remembers whether the object store itself failed, and
    gives up once the budget's time is spent."""

    def __init__(self, raw: IO[bytes], budget: _Budget) -> None:
        self._raw = raw
        self._budget = budget
        self.failed = False

    def read(self, n: int = -1) -> bytes:
        try:
            self._budget.check_time()
            return self._raw.read(n)
        except BaseException:
            self.failed = True
            raise


def _check_links_stay_inside(root: Path) -> None:
    """Refuse the result if any symlink, followed through the others, leaves `root`.

    Each link was checked on its own when unpacked, but links can be chained so that
    together they point out (`a -> y/..`, then `y -> d/up`, `d/up -> ..`).
    """
    real_root = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            if os.path.islink(path) and not _within(os.path.realpath(path), real_root):
                rel = os.path.relpath(path, root)
                raise UnsafeArchiveError(
                    f"model archive member {rel!r} is a symlink that resolves outside "
                    "the model directory"
                )


class ModelDataTimeout(TimeoutError):
    """Reading the model data took longer than the variant allows."""


class _Budget:
    """Bytes still allowed into the model directory, charged as they are written, and
    the time still allowed for reading them."""

    def __init__(
        self,
        max_bytes: int,
        url: str,
        deadline: float | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.left = max_bytes
        self.max_bytes = max_bytes
        self.url = url
        self.deadline = deadline
        self.timeout_s = timeout_s

    def check_time(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ModelDataTimeout(
                f"model data {self.url} did not download within {self.timeout_s:g} s "
                "(ModelDataDownloadTimeoutInSeconds)"
            )

    def error(self, what: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"model data {self.url} unpacks to more than {self.max_bytes} bytes "
            f"(limit reached at {what})"
        )

    def reserve(self, n: int, what: str) -> None:
        """Refuse up front when a member's declared size alone would not fit."""
        if n > self.left:
            raise self.error(what)

    def charge(self, n: int) -> None:
        self.left -= n


def _member_error(member: tarfile.TarInfo, problem: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"model archive member {member.name!r} {problem}")


def _member_path(member: tarfile.TarInfo, root: Path) -> Path:
    """Where a member lands, refusing absolute names and names that climb out."""
    name = member.name
    if not name and member.isdir():
        # The archive's root folder: the sagemaker SDK's repack adds its folder as `/`,
        # which tar stores as an empty name.
        return root
    if not name or "\x00" in name:
        raise _member_error(member, "has an empty or invalid name")
    if name.startswith("/") or _DRIVE_RE.match(name):
        raise _member_error(member, "has an absolute path")
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        raise _member_error(member, "escapes the model directory")
    return root if norm == "." else root / norm


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _check_no_symlink_above(member: tarfile.TarInfo, name: str, root: Path) -> None:
    """Refuse a member whose path goes through a symlink unpacked before it.

    Lexical checks cannot see `d/up -> ..` followed by `d/up/../x`; refusing to traverse
    any link at all (real model archives never need to) closes that door before a
    single folder is created. The raw name is walked, `..` included, because that is
    the path tar semantics would follow.
    """
    path = root
    for part in name.split("/")[:-1]:
        if part in ("", "."):
            continue
        path = path.parent if part == ".." else path / part
        if path.is_symlink():
            raise _member_error(member, f"lies beneath the symlink {part!r}")


def _extract_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, budget: _Budget
) -> None:
    target = _member_path(member, root)

    if (
        member.ischr()
        or member.isblk()
        or member.isfifo()
        or not (member.isreg() or member.isdir() or member.issym() or member.islnk())
    ):
        raise _member_error(member, "is a device, fifo or other special file")
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hard link"
        link = member.linkname
        if not link or link.startswith("/"):
            raise _member_error(member, f"is a {kind} to an absolute path {link!r}")
        # A symlink is relative to its own folder; a hard link names another member.
        base = posixpath.dirname(member.name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, link))
        if resolved == ".." or resolved.startswith("../"):
            raise _member_error(member, f"is a {kind} to {link!r}, outside the model directory")

    _check_no_symlink_above(member, member.name, root)

    # Second opinion from the standard library's "data" filter (Python >= 3.11.4).
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is not None:
        try:
            member = data_filter(member, str(root))
        except tarfile.FilterError as e:
            raise _member_error(member, f"is refused by tarfile's data filter: {e}") from e

    if target == root:
        if member.isdir():
            return
        raise _member_error(member, "would replace the model directory itself")

    target.parent.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)

    if member.isdir():
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise _member_error(member, "is a folder where a file or link already exists")
        target.mkdir(exist_ok=True, mode=_DIR_MODE)
        return

    # A later member replaces an earlier one of the same name (tar semantics); unlink
    # first so we never write *through* an existing symlink.
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        raise _member_error(member, "would replace a folder")

    if member.issym():
        os.symlink(member.linkname, target)
        # A symlink made of innocent parts (`a -> b`, `b -> ..`) could still point out;
        # check what it resolves to now that it exists.
        if not _within(os.path.realpath(target), os.path.realpath(root)):
            target.unlink()
            raise _member_error(
                member, f"is a symlink to {member.linkname!r}, outside the model directory"
            )
        return

    if member.islnk():
        source = _member_path_for_link(member, root)
        _check_no_symlink_above(member, member.linkname, root)
        if source.is_symlink() or not source.is_file():
            raise _member_error(
                member,
                f"is a hard link to {member.linkname!r}, which is not a file unpacked before it",
            )
        if not _within(os.path.realpath(source), os.path.realpath(root)):
            raise _member_error(
                member, f"is a hard link to {member.linkname!r}, outside the model directory"
            )
        # Sharing an inode would let a later member rewrite both names; a copy is as
        # cheap to reason about and costs what a regular member would.
        size = source.stat().st_size
        budget.reserve(size, repr(member.name))
        _write_file(member, target, source.open("rb"), budget, expected=size)
        return

    budget.reserve(member.size, repr(member.name))
    src = tar.extractfile(member)
    if src is None:  # pragma: no cover - isreg() members always have data
        raise _member_error(member, "has no data")
    _write_file(member, target, src, budget, expected=member.size)


def _member_path_for_link(member: tarfile.TarInfo, root: Path) -> Path:
    # Hard link targets name another member, relative to the archive root.
    norm = posixpath.normpath(member.linkname)
    return root / norm


def _write_file(
    member: tarfile.TarInfo, target: Path, src: IO[bytes], budget: _Budget, *, expected: int
) -> None:
    mode = _EXEC_MODE if (member.mode or 0) & 0o111 else _FILE_MODE
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, mode)
    with src, os.fdopen(fd, "wb") as dst:
        written = copy_stream(
            src, dst, limit=budget.left, on_limit=lambda: budget.error(repr(member.name))
        )
    budget.charge(written)
    if written != expected:
        # A stream cut short inside a member reads as a clean end of archive to
        # tarfile's stream mode; the byte count is what tells.
        raise _member_error(member, f"is truncated ({written} of {expected} bytes)")
    with contextlib.suppress(OSError):
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


# ---------------------------------------------------------------------- uncompressed


def _copy_prefix(store: ObjectStore, prefix: str, root: Path, budget: _Budget) -> None:
    """Copy every object under `prefix`, keeping its layout, within the budget."""
    for uri in store.list(prefix):
        rel = uri[len(prefix) :]
        try:
            target = safe_join(root, rel, what=f"model data object {uri}")
        except ValueError as e:
            raise UnsafeArchiveError(str(e)) from e
        _copy_one(store, uri, target, root, budget)


def _copy_object(store: ObjectStore, url: str, root: Path, budget: _Budget) -> None:
    name = url.rstrip("/").rpartition("/")[2]
    _copy_one(store, url, root / name, root, budget)


def _copy_one(store: ObjectStore, uri: str, target: Path, root: Path, budget: _Budget) -> None:
    target.parent.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
    if not _within(os.path.realpath(target.parent), os.path.realpath(root)):
        raise UnsafeArchiveError(f"model data object {uri} escapes the model directory")
    with store.open(uri, "rb") as raw, open(target, "xb") as dst:
        written = copy_stream(
            cast(IO[bytes], _SourceReader(raw, budget)),
            dst,
            limit=budget.left,
            on_limit=lambda: budget.error(uri),
        )
    budget.charge(written)
