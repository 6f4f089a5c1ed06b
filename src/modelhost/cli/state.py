"""`modelhost state`: back up and restore a data dir's SQLite files (the state store and
the async queue), with SQLite's online backup API; migrate a state store to another (a
laptop's SQLite file to a team's PostgreSQL database).

These work on the files, not through a server: `backup` is safe while one is serving
(SQLite copies a consistent snapshot); `restore` takes the data dir's lock first, so it
refuses while a server holds the folder. `migrate` reads a SQLite source from such a
snapshot, so the laptop's server may still run; a SQLite target is written under its
folder's lock, as `restore` does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelhost.cli import console

if TYPE_CHECKING:
    from modelhost.storage import StateStore as StateStoreType

state_app = typer.Typer(
    help="Back up, restore and migrate the state store and the async queue.",
    no_args_is_help=True,
)

DataDir = Annotated[Path, typer.Option(help="The server's data dir.")]
Store = Annotated[
    str,
    typer.Option(
        help="Which file: state (the resources, state.db) or async-queue (async-queue.db)."
    ),
]


def _store_path(data_dir: Path, store: str) -> Path:
    from modelhost.storage import STORE_FILES

    if store not in STORE_FILES:
        console.error(f"--store must be one of {', '.join(STORE_FILES)}, not {store!r}")
        raise typer.Exit(2)
    return data_dir.resolve() / STORE_FILES[store]


@state_app.command("backup")
def state_backup(
    file: Annotated[Path, typer.Argument(help="Where to write the backup.")],
    data_dir: DataDir = Path(".modelhost"),
    store: Store = "state",
) -> None:
    """Copy the store to FILE, consistently, even while a server is running."""
    from modelhost.storage import StoreDamaged, backup

    source = _store_path(data_dir, store)
    try:
        backup(source, file)
    except (FileNotFoundError, StoreDamaged) as exc:
        console.error(str(exc))
        raise typer.Exit(1) from None
    console.out.print(f"backed up {source} to {file}")


@state_app.command("restore")
def state_restore(
    file: Annotated[Path, typer.Argument(help="A backup made by `modelhost state backup`.")],
    data_dir: DataDir = Path(".modelhost"),
    store: Store = "state",
) -> None:
    """Replace the store by FILE; refused while a server holds the data dir. The files
    replaced are kept beside it as <name>.replaced-<n>."""
    from modelhost.storage import DataDirBusy, DataDirLock, StoreDamaged, restore

    target = _store_path(data_dir, store)
    try:
        lock = DataDirLock.acquire(target.parent, state="restoring")
    except DataDirBusy as exc:
        console.error(str(exc))
        raise typer.Exit(1) from None
    try:
        kept = restore(file, target)
    except StoreDamaged as exc:
        lock.release(None)
        console.error(str(exc))
        raise typer.Exit(1) from None
    # The folder now holds a complete store: the next server starts as after a clean stop.
    lock.release()
    console.out.print(
        f"restored {target} from {file}"
        + (f"; the replaced file is kept as {kept}" if kept else "")
    )


def _sqlite_path(location: str) -> Path | None:
    """The file a `sqlite:PATH` (or `sqlite:///PATH`) location names; None for a URL."""
    scheme, _, rest = location.partition(":")
    if scheme != "sqlite":
        return None
    return Path(rest[2:] if rest.startswith("//") else rest)


@contextmanager
def _open_location(location: str, *, source: bool) -> Iterator[StateStoreType]:
    """The store at `location`: a SQLite file, or a postgresql:// URL."""
    from modelhost.storage import DataDirLock, SqliteStateStore, backup, open_postgres

    path = _sqlite_path(location)
    with ExitStack() as stack:
        if path is None:
            if not location.startswith(("postgresql://", "postgres://")):
                raise ValueError(
                    f"{location!r}: name a state store as sqlite:PATH or postgresql://..."
                )
            store: StateStoreType = open_postgres(location)
        elif source:
            if not path.is_file():
                raise ValueError(f"{path} does not exist")
            snapshot = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "state.db"
            backup(path, snapshot)  # consistent even while a server writes to it
            store = SqliteStateStore(snapshot, used_before=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = DataDirLock.acquire(path.parent.resolve(), state="restoring")
            stack.callback(lock.release)
            store = SqliteStateStore(path)
        stack.callback(store.close)
        yield store


@state_app.command("migrate")
def state_migrate(
    source: Annotated[
        str,
        typer.Option("--from", help="The store to copy: sqlite:PATH or postgresql://..."),
    ],
    target: Annotated[
        str,
        typer.Option("--to", help="Where to copy it: postgresql://... or sqlite:PATH."),
    ],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Copy into a target that already holds records, overwriting those of the "
            "same name.",
        ),
    ] = False,
) -> None:
    """Copy every resource and tag of one state store into another, e.g. a laptop's
    <data-dir>/state.db into the PostgreSQL database a team's servers share. A target
    that already holds records is refused unless --replace."""
    from modelhost.storage import (
        DataDirBusy,
        StoreDamaged,
        StoreUnavailable,
        StoreUnreachable,
        TargetNotEmpty,
        copy_state,
    )

    try:
        with (
            _open_location(source, source=True) as from_store,
            _open_location(target, source=False) as to_store,
        ):
            report = copy_state(from_store, to_store, replace=replace)
    except TargetNotEmpty:
        console.error(
            f"{_shown(target)} already holds records; pass --replace to copy into it anyway"
        )
        raise typer.Exit(1) from None
    except (
        ValueError,
        DataDirBusy,
        StoreDamaged,
        StoreUnavailable,
        StoreUnreachable,
        FileNotFoundError,
    ) as exc:
        console.error(str(exc))
        raise typer.Exit(1) from None
    total = sum(report.records.values())
    console.out.print(
        f"migrated {total} record(s) and {report.tags} tag(s) from {_shown(source)} "
        f"to {_shown(target)}" + (f"; {report.replaced} replaced" if report.replaced else ""),
        soft_wrap=True,
    )
    for kind, count in report.records.items():
        console.out.print(f"  {kind}: {count}")
    for kind, name in report.clashes:
        console.error(f"left out {kind} {name}: the target has the name in another case")
    if report.clashes:
        raise typer.Exit(1)


def _shown(location: str) -> str:
    """A location for messages, without a password."""
    from modelhost.storage.postgres_state import redact

    return location if _sqlite_path(location) is not None else redact(location)
