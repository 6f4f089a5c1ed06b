"""`modelhost server`: the control plane and the runtime in one process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer


def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the control plane and runtime.")] = 8765,
    data_dir: Annotated[Path, typer.Option(help="Where state and artifacts live.")] = Path(
        ".modelhost"
    ),
    region: Annotated[str, typer.Option(help="Region shown in ARNs.")] = "us-east-1",
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the control plane and the runtime on one port."""
    import uvicorn

    from modelhost.config import Settings
    from modelhost.server import ModelhostApp

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings(data_dir=data_dir.resolve(), host=host, port=port, region=region)
    except ValueError as exc:  # a bad MODELHOST_* variable
        typer.echo(f"modelhost server: {exc}", err=True)
        raise typer.Exit(2) from exc
    uvicorn.run(
        ModelhostApp(settings), host=host, port=port, loop="uvloop", http="httptools",
        lifespan="on", access_log=False, log_level="warning",
        # Nothing sits in front of the server to trust forwarded headers from, and each
        # of these costs time on every request of the hot path.
        proxy_headers=False, server_header=False, date_header=False, ws="none",
    )
