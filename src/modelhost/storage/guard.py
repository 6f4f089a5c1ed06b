"""What a server does for its data directory as a whole: hold it exclusively, open its
SQLite files checked, watch them while serving, back them up on a schedule, and leave them
clean at shutdown.

Kept apart from the server so its start-up and shutdown read as a few calls, and so the
`modelhost state` commands reuse the same lock and files.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from .datadir import RUNNING, STOPPED, DataDirLock
from .sqlite import SqliteFile, backup

log = logging.getLogger(__name__)

#: The files a data dir holds, by the name `modelhost state --store` takes.
STORE_FILES = {"state": "state.db", "async-queue": "async-queue.db"}


class DataDirGuard:
    """Takes the data dir lock on creation (raises DataDirBusy when another server holds
    it); everything else in the folder is touched only after that."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lock = DataDirLock.acquire(data_dir)
        self._used_before = self.lock.used_before()
        self.files: list[SqliteFile] = []

    def checks(self, path: Path) -> dict[str, bool]:
        """The keyword arguments a SQLite file at `path` opens with (see SqliteFile), from
        what the lock says about the previous run. A file that does not exist yet is new
        unless it is the state store of a folder that held state before (the queue file
        appears only once a SQLite queue was used)."""
        used = self._used_before and (path.exists() or path.name == STORE_FILES["state"])
        return {"used_before": used, "unclean": self.lock.unclean}

    def track(self, store: object) -> None:
        """Watch `store` if it is a SQLite file (the queue may be Redis instead)."""
        if isinstance(store, SqliteFile) and store not in self.files:
            self.files.append(store)

    @property
    def healthy(self) -> bool:
        """Every file still readable, as last seen: an attribute read, cheap enough for
        each /ping."""
        return all(store.healthy for store in self.files)

    def damage(self) -> str:
        return "; ".join(store.damage for store in self.files if store.damage)

    async def watch(self, interval_s: float) -> None:
        """Check each file on disk every `interval_s` (in a thread: the check reads the
        whole file), so damage shows on /ping even while no call touches the store."""
        while True:
            await asyncio.sleep(interval_s)
            for store in self.files:
                was_healthy = store.healthy
                if not await asyncio.to_thread(store.probe) and was_healthy:
                    log.error(
                        "state store damaged: %s; stop the server and restore a "
                        "backup with `modelhost state restore`",
                        store.damage,
                    )

    async def back_up(self, folder: Path, interval_s: float, keep: int) -> None:
        """Every `interval_s`, copy each file into `folder` as `<name>-<UTC time>.db`,
        keeping the newest `keep` copies of each."""
        while True:
            await asyncio.sleep(interval_s)
            for store in self.files:
                if not store.healthy:
                    continue  # never rotate good backups out for copies of a broken file
                try:
                    await asyncio.to_thread(backup_rotating, store.path, folder, keep)
                except Exception:
                    log.exception("backup of %s failed", store.path)

    def release(self) -> None:
        """After the files are closed (checkpointed): mark the folder cleanly stopped and
        drop the lock. A folder whose files were damaged stays marked as after a crash."""
        self.lock.release(STOPPED if self.healthy else RUNNING)

    def abandon(self) -> None:
        """Drop the lock of a server that never started, leaving the mark as it was: a
        refused start must not hide that the run before it crashed."""
        for store in self.files:
            store.close()
        self.lock.release(None)


def backup_rotating(source: Path, folder: Path, keep: int) -> Path:
    stem = source.name.removesuffix(".db")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = folder / f"{stem}-{stamp}.db"
    backup(source, target)
    copies = sorted(folder.glob(f"{stem}-*Z.db"))
    for old in copies[: max(0, len(copies) - keep)]:
        old.unlink(missing_ok=True)
    return target
