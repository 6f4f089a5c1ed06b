"""`modelhost state`: back up and restore a data dir's SQLite files (the state store and
the async queue), with SQLite's online backup API.

These work on the files, not through a server: `backup` is safe while one is serving
(SQLite copies a consistent snapshot); `restore` takes the data dir's lock first, so it
refuses while a server holds the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelhost.cli import console

state_app = typer.Typer(
    help="Back up and restore the state store and the async queue.", no_args_is_help=True
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
