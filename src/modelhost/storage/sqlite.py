"""One SQLite file used from many threads: the connection setup the state store and the
SQLite queue share, and how a damaged file is told apart from a new one.

WAL lets readers go on while a writer commits. synchronous=NORMAL in WAL mode: a committed
write survives a killed server (the WAL is written before COMMIT returns); only a power cut
may lose the last few. FULL would cost an fsync per write. One connection guarded by a
lock is enough: calls take microseconds, so callers on the event loop use it directly
instead of paying for a thread hop.

Damage must never look like a fresh start. Between clean shutdowns nearly all state lives
in the `-wal` file, so a file opened here is checked first: the write-ahead log must be
present after a crash and whole (SQLite itself silently drops a log whose checksums fail),
the database must pass SQLite's integrity check, and a folder that held state before must
not come up with an empty store. Any of these refuses to open with `StoreDamaged`, one line
that names the file and how to restore it. Damage found while serving marks the file
unhealthy: every later call fails fast with `StoreUnavailable` (a SageMaker 503) instead
of writing into a broken file, and the server's /ping says 503.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelhost.errors import ServiceUnavailable

_WAL_MAGIC = (0x377F0682, 0x377F0683)  # little-, big-endian checksums
_WAL_HEADER = 32
_FRAME_HEADER = 24
# Primary result codes that mean the file, not the query, is at fault.
_DAMAGE_CODES = {10, 11, 26}  # SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_NOTADB


class StoreDamaged(RuntimeError):
    """A store file that must not be opened: restore it from a backup."""

    def __init__(self, path: Path, problem: str, *, hint: bool = True) -> None:
        advice = (
            (
                f"; restore a backup with `modelhost state restore BACKUP --data-dir "
                f"{path.parent}{_which(path)}` (or move the data dir aside to start "
                "afresh)"
            )
            if hint
            else ""
        )
        super().__init__(f"{path}: {problem}{advice}")
        self.path = path


class StoreUnavailable(ServiceUnavailable):
    """A call on a store found damaged while serving."""


def _read_only(path: Path) -> str:
    return f"{path.resolve().as_uri()}?mode=ro"


def _which(path: Path) -> str:
    return " --store async-queue" if path.name == "async-queue.db" else ""


class SqliteFile:
    """Base of a store kept in one SQLite file: `_transaction` is one `BEGIN IMMEDIATE`
    transaction, so two threads never interleave writes; `_read` guards a read. Both turn
    damage into `StoreUnavailable`.

    `used_before`: the data dir shows earlier state, so an empty file is a loss; `unclean`:
    the previous server was killed, so its write-ahead log must still be there."""

    def __init__(
        self, path: Path, schema: str, *, used_before: bool = False, unclean: bool = False
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        check_before_open(path, used_before=used_before, unclean=unclean)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            if problem := _contents_problem(self._db, used_before):
                self._db.close()
                raise StoreDamaged(path, problem)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(schema)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreDamaged(path, f"cannot be read ({exc})") from None
        self._lock = threading.RLock()
        #: Why the file is unusable, once damage was seen while serving; "" while healthy.
        self.damage = ""

    @property
    def healthy(self) -> bool:
        return not self.damage

    def _failed(self, exc: sqlite3.Error) -> StoreUnavailable:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _DAMAGE_CODES:
            self.damage = self.damage or f"{self.path}: {exc}"
        return StoreUnavailable(
            f"The state store {self.path.name} cannot be read ({exc}); the server's "
            "operator must restore it from a backup."
        )

    def _usable(self) -> None:
        if self.damage:
            raise StoreUnavailable(
                f"The store {self.path.name} is damaged; the server's operator must restore "
                "it from a backup."
            )

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._usable()
            try:
                yield self._db
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.IntegrityError):
                    raise
                raise self._failed(exc) from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._read() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def probe(self) -> bool:
        """Check the file as it is on disk now, from a fresh connection (this one's page
        cache would hide damage): SQLite's quick check. Blocking; call it in a thread.
        Marks the store damaged on failure; True while healthy."""
        if self.damage:
            return False
        try:
            probe = sqlite3.connect(_read_only(self.path), uri=True)
            try:
                rows = probe.execute("PRAGMA quick_check(1)").fetchall()
            finally:
                probe.close()
        except sqlite3.DatabaseError as exc:
            rows = [(str(exc),)]
        except sqlite3.Error:
            return True  # busy or locked: not damage
        if rows != [("ok",)]:
            self.damage = f"{self.path}: {rows[0][0]}"
        return not self.damage

    def backup_to(self, target: Path) -> None:
        """A consistent copy of the live file, safe while serving (see `backup`)."""
        backup(self.path, target)

    def close(self) -> None:
        """Fold the write-ahead log into the database file, then close: a cleanly
        stopped store is one self-contained file."""
        with self._lock:
            if not self.damage:
                with contextlib.suppress(sqlite3.Error):  # closing checkpoints what it can
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()


# --- checks ------------------------------------------------------------------------------


def check_before_open(path: Path, *, used_before: bool, unclean: bool) -> None:
    """What can be told from the files alone, before SQLite reads (and would silently
    drop) anything."""
    wal = path.with_name(path.name + "-wal")
    size = path.stat().st_size if path.exists() else -1
    if used_before and size <= 0:
        raise StoreDamaged(path, "is missing or empty, but this data dir held state before")
    if unclean and size > 0 and _wal_mode(path) and not wal.exists():
        raise StoreDamaged(
            path, f"{wal.name} is missing after an unclean shutdown (it held the latest changes)"
        )
    if wal.exists():
        problem = _wal_problem(wal)
        if problem:
            raise StoreDamaged(path, f"{wal.name} is damaged ({problem})")


def _contents_problem(db: sqlite3.Connection, used_before: bool) -> str:
    """SQLite's integrity check, and whether a store that should hold state is empty."""
    rows = db.execute("PRAGMA integrity_check(5)").fetchall()
    if rows != [("ok",)]:
        return "fails SQLite's integrity check: " + "; ".join(str(row[0]) for row in rows)
    tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    if used_before and not tables[0]:
        return "holds no tables, but this data dir held state before"
    return ""


def _wal_mode(path: Path) -> bool:
    """The header's read/write versions are 2 in WAL mode."""
    with path.open("rb") as file:
        header = file.read(20)
    return len(header) == 20 and header[18] == 2 and header[19] == 2


def _wal_problem(wal: Path) -> str:
    """Why SQLite would throw away committed frames of this log, or "" when it is whole.

    A log's frames each carry the header's salts and a running checksum. A mismatch in the
    last frame is a write torn by a power cut (SQLite drops it, rightly); frames with the
    header's salts after a bad one are committed changes it would silently drop. Frames
    with other salts are left from before a checkpoint restarted the log, and are ignored
    by design."""
    data = wal.read_bytes()
    if not data:
        return ""
    if len(data) < _WAL_HEADER:
        return f"{len(data)} bytes, shorter than its header"
    magic, _version, page_size, _seq, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:32])
    if magic not in _WAL_MAGIC:
        return "not a SQLite write-ahead log"
    endian = "<" if magic == _WAL_MAGIC[0] else ">"
    s = _checksum(endian, data[:24], 0, 0)
    if s != (c1, c2):
        return "its header checksum does not match"
    frame = _FRAME_HEADER + page_size
    offset, bad_at = _WAL_HEADER, -1
    while offset + frame <= len(data):
        page, _commit, f_salt1, f_salt2, f1, f2 = struct.unpack(
            ">6I", data[offset : offset + _FRAME_HEADER]
        )
        if (f_salt1, f_salt2) != (salt1, salt2):
            break
        if bad_at < 0:
            s = _checksum(endian, data[offset : offset + 8], *s)
            s = _checksum(endian, data[offset + _FRAME_HEADER : offset + frame], *s)
            if s != (f1, f2) or page == 0:
                bad_at = offset
        elif page:
            return f"frame at byte {bad_at} fails its checksum, with later frames after it"
        offset += frame
    return ""


def _checksum(endian: str, data: bytes, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack(f"{endian}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


# --- backup and restore -----------------------------------------------------------------


def backup(source: Path, target: Path) -> None:
    """Copy a store with SQLite's online backup API: consistent even while a server
    writes to it. The copy is one self-contained file, written beside `target` and
    renamed into place, so a failed backup never leaves a partial file under its name."""
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(_read_only(source), uri=True)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except sqlite3.DatabaseError as exc:
        partial.unlink(missing_ok=True)
        raise StoreDamaged(source, f"cannot be backed up ({exc})") from None
    finally:
        src.close()
    os.replace(partial, target)


def restore(backup_file: Path, target: Path) -> Path | None:
    """Replace the store at `target` by a checked copy of `backup_file`. The caller holds
    the data dir lock (no server uses `target`). The files replaced are kept beside it,
    renamed `<name>.replaced-<n>`; returns the kept main file, if there was one."""
    check_backup(backup_file)
    kept: Path | None = None
    if target.exists():
        n = 1
        while target.with_name(f"{target.name}.replaced-{n}").exists():
            n += 1
        kept = target.with_name(f"{target.name}.replaced-{n}")
        for suffix in ("", "-wal", "-shm"):
            old = target.with_name(target.name + suffix)
            if old.exists():
                os.replace(old, target.with_name(f"{kept.name}{suffix}"))
    backup(backup_file, target)
    return kept


def check_backup(path: Path) -> None:
    """Refuse a backup file that is missing, empty, not a database or damaged."""
    if not path.is_file() or path.stat().st_size == 0:
        raise StoreDamaged(path, "is missing or empty", hint=False)
    try:
        db = sqlite3.connect(_read_only(path), uri=True)
        try:
            problem = _contents_problem(db, used_before=True)
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        problem = f"is not a usable SQLite store ({exc})"
    if problem:
        raise StoreDamaged(path, problem, hint=False)
