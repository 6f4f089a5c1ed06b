"""`modelhost server`: the control plane and the runtime in one process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from modelhost import defaults


def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = defaults.HOST,
    port: Annotated[
        int, typer.Option(help="Port for the control plane and runtime.")
    ] = defaults.PORT,
    data_dir: Annotated[Path, typer.Option(help="Where state and artifacts live.")] = Path(
        ".modelhost"
    ),
    region: Annotated[str, typer.Option(help="Region shown in ARNs.")] = defaults.REGION,
    state: Annotated[
        str | None,
        typer.Option(
            envvar="MODELHOST_STATE_URL",
            show_default=False,
            help="Where state lives: sqlite (the data dir's state.db) or "
            "postgresql://user:password@host:port/db (a database several servers share). "
            "[default: sqlite:///<data-dir>/state.db]",
        ),
    ] = None,
    instance_backend: Annotated[
        str | None,
        typer.Option(
            envvar="MODELHOST_INSTANCE_BACKEND",
            show_default=False,
            help="process: modelhost's own images run as processes, any other image in a "
            "container; container: every instance in a container; ray: every instance on "
            "a Ray cluster (see --ray-address). [default: process]",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            envvar="MODELHOST_RAY_ADDRESS",
            show_default=False,
            help="With --instance-backend ray: auto (RAY_ADDRESS or a local `ray start` "
            "cluster), local (a one-machine cluster started with the server), "
            "ray://host:10001 or host:port (the cluster's GCS). [default: auto]",
        ),
    ] = None,
    instance_host: Annotated[
        str | None,
        typer.Option(
            envvar="MODELHOST_INSTANCE_ADVERTISE_HOST",
            show_default=False,
            help="IP address of this machine instances listen on and other servers sharing "
            "the state store reach them at; only routers (holding an instance's token) get "
            "an answer. [default: 127.0.0.1]",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log",
            help="Log one line per request (client, method, path, status) to stderr; off "
            "by default, as it costs time on every request.",
        ),
    ] = False,
    backup_interval: Annotated[
        float | None,
        typer.Option(
            envvar="MODELHOST_BACKUP_INTERVAL",
            show_default=False,
            help="Seconds between online backups of the state store and queue; 0: none. "
            "[default: 3600]",
        ),
    ] = None,
    backup_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="MODELHOST_BACKUP_DIR",
            show_default=False,
            help="Folder for periodic backups. [default: <data-dir>/backups]",
        ),
    ] = None,
    backup_keep: Annotated[
        int | None,
        typer.Option(
            envvar="MODELHOST_BACKUP_KEEP",
            show_default=False,
            help="Periodic backups kept per file. [default: 24]",
        ),
    ] = None,
) -> None:
    """Run the control plane and the runtime on one port."""
    import uvicorn

    from modelhost.config import Settings
    from modelhost.runtime import protocol_for
    from modelhost.server import ModelhostApp
    from modelhost.storage import DataDirBusy, StoreDamaged, StoreUnreachable

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    given: dict[str, Any] = {
        key: value
        for key, value in (
            ("backup_interval_s", backup_interval),
            ("backup_keep", backup_keep),
            ("backup_folder", backup_dir and backup_dir.resolve()),
            ("state_url", state),
            ("instance_backend", instance_backend and instance_backend.strip().lower()),
            ("ray_address", ray_address and ray_address.strip()),
            ("instance_host", instance_host and instance_host.strip()),
        )
        if value is not None
    }
    try:
        settings = Settings(
            data_dir=data_dir.resolve(), host=host, port=port, region=region, **given
        )
        app = ModelhostApp(settings)
    except (ValueError, DataDirBusy, StoreDamaged, StoreUnreachable) as exc:  # a bad
        typer.echo(f"modelhost server: {exc}", err=True)  # MODELHOST_* variable, a busy or
        # damaged data dir, a database that cannot be reached
        raise typer.Exit(2 if isinstance(exc, ValueError | StoreUnreachable) else 1) from None
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        # InvokeEndpoint answered without ASGI; the rest through the app.
        http=protocol_for(app),
        lifespan="on",
        access_log=access_log,
        log_level="warning",
        timeout_keep_alive=settings.idle_timeout_s,  # type: ignore[arg-type]  # a float works
        # Nothing sits in front of the server to trust forwarded headers from, and each
        # of these costs time on every request of the hot path.
        proxy_headers=False,
        server_header=False,
        date_header=False,
        ws="none",
    )
    if access_log:  # uvicorn logs requests at INFO, below the warning level set above
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    _serve(config)


def _serve(config: Any) -> None:
    """uvicorn's server, saying where it listens once it does (uvicorn's own line is
    below the log level the server runs uvicorn at)."""
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                for server in self.servers:
                    for sock in server.sockets:
                        address, bound = sock.getsockname()[:2]
                        shown = f"[{address}]" if ":" in address else address
                        typer.echo(f"modelhost listening on http://{shown}:{bound}", err=True)

    AnnouncingServer(config).run()
