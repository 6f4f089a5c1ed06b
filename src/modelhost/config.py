"""Server settings: one place that says where state lives and how instances run."""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from modelhost import defaults
from modelhost.auth import access_keys_from_environment
from modelhost.policy import Policies


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).resolve() if value else None


def _check_instance_host(host: str) -> None:
    """An IP address, not a name or a wildcard: it is what instances bind to and what
    other servers are told to dial, so it must be one address of this machine."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"MODELHOST_INSTANCE_ADVERTISE_HOST={host!r}: expected an IP address of this "
            "machine (e.g. 10.0.0.5), not a name"
        ) from None
    if address.is_unspecified:
        raise ValueError(
            f"MODELHOST_INSTANCE_ADVERTISE_HOST={host!r}: name the one address other "
            "servers reach this machine on; a wildcard cannot be advertised"
        )


#: The state stores MODELHOST_STATE_URL may name, by URL scheme.
STATE_SCHEMES = ("sqlite", "postgresql", "postgres")


def state_scheme(url: str) -> str:
    """The kind of state store a MODELHOST_STATE_URL names (empty: "sqlite"; "postgres"
    is "postgresql"); anything else is refused with one line naming what is supported."""
    scheme = url.partition("://")[0] if "://" in url else (url or "sqlite")
    if scheme == "postgres":
        return "postgresql"
    if scheme not in STATE_SCHEMES:
        raise ValueError(
            f"MODELHOST_STATE_URL={url!r}: unsupported state store; supported "
            f"schemes: {', '.join(STATE_SCHEMES)} (empty: the embedded SQLite "
            "file <data-dir>/state.db)"
        )
    return scheme


def _sqlite_state_file(url: str, data_dir: Path) -> Path:
    """The embedded SQLite file: empty, "sqlite", "sqlite://" or
    "sqlite:///<data-dir>/state.db" all name <data-dir>/state.db. It stays a file of the
    data dir, so the data dir's lock guards it and `modelhost state` finds it."""
    embedded = data_dir / "state.db"
    rest = url.partition("://")[2]
    if rest and Path(rest).resolve() != embedded.resolve():
        raise ValueError(
            f"MODELHOST_STATE_URL={url!r}: the SQLite state store is the data "
            f"dir's own file, sqlite:///{embedded}; choose another --data-dir "
            "to keep state elsewhere"
        )
    return embedded


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = defaults.HOST
    port: int = defaults.PORT
    region: str = defaults.REGION
    account_id: str = "000000000000"
    # "process": modelhost's own images run as processes, any other image in a container;
    # "container": every instance in a container; "ray": every instance on a Ray cluster
    # (modelhost.instances.open_backend).
    instance_backend: str = field(
        default_factory=lambda: (
            os.environ.get("MODELHOST_INSTANCE_BACKEND", "").strip().lower() or "process"
        )
    )
    # The Ray cluster the "ray" backend places instances on: "auto" (RAY_ADDRESS, else a
    # cluster started on this machine by `ray start`), "local" (a cluster of this machine
    # only, started with the server), "ray://host:10001" (Ray Client) or a GCS "host:port".
    ray_address: str = field(
        default_factory=lambda: os.environ.get("MODELHOST_RAY_ADDRESS", "").strip() or "auto"
    )
    # The container engine's API (a Docker-compatible socket: dockerd or `podman system
    # service`); empty: DOCKER_HOST, else /run/podman/podman.sock or /var/run/docker.sock.
    container_host: str = field(
        default_factory=lambda: (
            os.environ.get("MODELHOST_CONTAINER_HOST", "").strip()
            or os.environ.get("DOCKER_HOST", "").strip()
        )
    )
    # The longest an image pull may take before the endpoint fails naming the image
    # (MODELHOST_IMAGE_PULL_TIMEOUT, seconds). SageMaker has no setting for it (its
    # ModelDataDownloadTimeoutInSeconds covers the model data only), so it is the server's.
    image_pull_timeout_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_IMAGE_PULL_TIMEOUT", 1800.0)
    )
    # Serverless cold starts of modelhost's own images take a spare container started
    # ahead, imports done (MODELHOST_CONTAINER_SPARES=0: every container starts fresh);
    # see modelhost.instances.spares.
    container_spares: bool = field(
        default_factory=lambda: os.environ.get("MODELHOST_CONTAINER_SPARES", "1") != "0"
    )
    # Where the state store lives: empty or "sqlite" for the embedded SQLite file
    # <data-dir>/state.db (see `state_path`), or a postgresql://user:password@host/db URL
    # for a PostgreSQL database several servers share; other schemes are refused.
    state_url: str = field(
        default_factory=lambda: os.environ.get("MODELHOST_STATE_URL", "").strip()
    )
    # Where s3:// URIs go: "auto" (an S3 endpoint configured the way AWS tools read it,
    # else the embedded store), "local" (always embedded) or "aws" (AWS's own S3).
    s3: str = field(
        default_factory=lambda: os.environ.get("MODELHOST_S3", "").strip().lower() or "auto"
    )
    # Limits SageMaker applies to real-time endpoints.
    max_payload_bytes: int = 6 * 1024 * 1024
    model_timeout_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_MODEL_TIMEOUT", 60.0)
    )
    # How long pip may take to install a model's code/requirements.txt (process backend).
    requirements_timeout_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_REQUIREMENTS_TIMEOUT", 600.0)
    )
    # How long an instance may take to answer /ping after it starts.
    startup_timeout_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_STARTUP_TIMEOUT", 120.0)
    )
    health_interval_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_HEALTH_INTERVAL", 1.0)
    )
    # Every instance is pinged this often, each ping given this long to answer; one that
    # misses this many in a row (or times out this many requests while its peers do not)
    # is killed and replaced. Short, because a hung instance holds its requests meanwhile.
    ping_interval_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_PING_INTERVAL", 1.0)
    )
    ping_timeout_s: float = field(default_factory=lambda: _env_float("MODELHOST_PING_TIMEOUT", 1.0))
    ping_misses: int = field(
        default_factory=lambda: max(1, int(_env_float("MODELHOST_PING_MISSES", 3)))
    )
    # Every instance is a process on this machine: an InitialInstanceCount typo must not
    # start hundreds of them. SageMaker has per-account instance quotas for the same reason.
    max_instances: int = field(
        default_factory=lambda: int(_env_float("MODELHOST_MAX_INSTANCES", 64))
    )
    # Whether callers may name local files (file:// URIs, absolute paths) wherever they
    # name an object: ModelDataUrl, InputLocation, transform inputs and outputs. Off: any
    # caller who may create a model or invoke an endpoint could read any file the server
    # can read. Only s3:// (the embedded store or the configured S3) is accepted then.
    allow_local_paths: bool = field(
        default_factory=lambda: (
            os.environ.get("MODELHOST_ALLOW_LOCAL_PATHS", "").strip().lower()
            in ("1", "true", "yes", "on")
        )
    )
    # SigV4 access keys (access key id -> secret); empty: signatures are not checked.
    access_keys: dict[str, str] = field(default_factory=access_keys_from_environment)
    # IAM-style permissions of those keys (modelhost.policy); unset: each may do anything.
    policy_file: str = field(default_factory=lambda: os.environ.get("MODELHOST_POLICY_FILE", ""))
    # A bearer token that lets a Prometheus scraper read /metrics without signing.
    metrics_token: str = field(
        default_factory=lambda: os.environ.get("MODELHOST_METRICS_TOKEN", ""), repr=False
    )
    # Refuse model archives that unpack to more than this.
    max_model_bytes: int = field(
        default_factory=lambda: int(_env_float("MODELHOST_MAX_MODEL_BYTES", 20 * 1024**3))
    )
    # Autoscaling: how often policies are evaluated, and the span of recent metrics each
    # evaluation averages (SageMaker's alarms use one-minute periods).
    autoscaling_interval_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_AUTOSCALING_INTERVAL", 10.0)
    )
    autoscaling_window_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_AUTOSCALING_WINDOW", 60.0)
    )
    # Data capture: how often captured invocations are written, and the size of a file
    # past which one is started early (a crash loses at most one interval).
    capture_flush_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_CAPTURE_FLUSH_INTERVAL", 1.0)
    )
    capture_file_bytes: int = field(
        default_factory=lambda: int(_env_float("MODELHOST_CAPTURE_FILE_BYTES", 8 * 1024**2))
    )

    # Asynchronous inference: how long a worker's lease on a request lasts without being
    # renewed, how often a request is tried before it fails, how often the queue is polled
    # when nothing wakes the workers, the largest input, and the webhook signing key. The
    # lease is renewed every third of it, so 10 s keeps a dead server's requests waiting
    # about as long as its other work (MODELHOST_LEASE_PERIOD).
    async_lease_s: float = field(default_factory=lambda: _env_float("MODELHOST_ASYNC_LEASE", 10.0))
    async_max_attempts: int = field(
        default_factory=lambda: int(_env_float("MODELHOST_ASYNC_MAX_ATTEMPTS", 3))
    )
    async_poll_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_ASYNC_POLL_INTERVAL", 1.0)
    )
    # Between attempts a request waits, so that a short outage of the object store or an
    # instance does not spend every attempt at once: exponential backoff with jitter,
    # base * 2^(attempt - 1) capped at the maximum, a random wait from half that to all
    # of it. A failed write of the outcome retries the write on the same schedule, with
    # the model's answer kept, not the model.
    async_retry_base_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_ASYNC_RETRY_BASE", 1.0)
    )
    async_retry_max_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_ASYNC_RETRY_MAX", 60.0)
    )
    max_async_payload_bytes: int = 1024**3
    # The smallest RequestTTLSeconds accepted (SageMaker's is 60; tests shorten it).
    async_min_ttl_s: int = field(
        default_factory=lambda: int(_env_float("MODELHOST_ASYNC_MIN_TTL", 60))
    )
    # How long a finished (succeeded, failed or expired) request stays in the queue, for
    # `modelhost endpoints async-requests`; then it is deleted so the queue stops growing.
    # Its result or failure object is the user's record and stays.
    async_retention_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_ASYNC_RETENTION_S", 7 * 24 * 3600.0)
    )
    # "sqlite" (default) or a redis:// URL shared by several servers.
    async_queue: str = field(default_factory=lambda: os.environ.get("MODELHOST_ASYNC_QUEUE", ""))
    webhook_secret: str = field(
        default_factory=lambda: os.environ.get("MODELHOST_WEBHOOK_SECRET", "")
    )
    # Serverless variants: an instance stops after this long without a request (unless it
    # holds provisioned concurrency), serves this many requests at once, and a variant runs
    # at most this many instances whatever its MaxConcurrency.
    serverless_idle_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_SERVERLESS_IDLE_S", 300.0)
    )
    serverless_instance_concurrency: int = field(
        default_factory=lambda: max(
            1, int(_env_float("MODELHOST_SERVERLESS_INSTANCE_CONCURRENCY", 4))
        )
    )
    serverless_max_instances: int = field(
        default_factory=lambda: max(1, int(_env_float("MODELHOST_SERVERLESS_MAX_INSTANCES", 4)))
    )
    # A secret of this server process: its own load tests (the recommender driving a
    # serverless endpoint through the router) send it instead of a SigV4 signature.
    internal_token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    # Fork instances from a pre-warmed parent instead of starting a fresh interpreter each.
    fork_server: bool = field(
        default_factory=lambda: os.environ.get("MODELHOST_FORK_SERVER", "1") != "0"
    )
    # Instances in control groups with their type's CPU quota and memory ("auto": where
    # the machine lets us, "off": thread counts and RLIMIT_DATA only); every type's vCPUs
    # count as this many cores each, so a small machine can still tell types apart.
    cgroups: str = field(
        default_factory=lambda: (
            os.environ.get("MODELHOST_CGROUPS", "auto").strip().lower() or "auto"
        )
    )
    cpu_scale: float = field(default_factory=lambda: _env_float("MODELHOST_CPU_SCALE", 1.0))
    # The user instances run as when the server is root ("": nobody); see
    # modelhost.instances.isolation.
    instance_user: str = field(
        default_factory=lambda: os.environ.get("MODELHOST_INSTANCE_USER", "").strip()
    )
    # The address instances listen on (process) or are published on (container), and the
    # one the instance registry gives other servers sharing the state store
    # (MODELHOST_INSTANCE_ADVERTISE_HOST, an IP address of this machine). 127.0.0.1 by
    # default: nothing but this machine reaches an instance. Beyond loopback, the
    # instance token is what turns away anyone but a router.
    instance_host: str = field(
        default_factory=lambda: (
            os.environ.get("MODELHOST_INSTANCE_ADVERTISE_HOST", "").strip() or "127.0.0.1"
        )
    )
    # Input a transform job commits per output part: at most this much is redone after
    # a crash (a smaller part costs one more object write and journal entry).
    transform_part_bytes: int = field(
        default_factory=lambda: int(_env_float("MODELHOST_TRANSFORM_PART_BYTES", 16 * 1024**2))
    )
    # With a state store several servers share: how long a server's lease on a unit of
    # work (an endpoint, a job) lasts without renewal (it renews every third of it), so
    # about how long the work waits for another server after its owner dies.
    lease_period_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_LEASE_PERIOD", 10.0)
    )
    # CloudWatch-style metric history (<data-dir>/metrics.db, modelhost.history): on
    # unless MODELHOST_METRICS_HISTORY=0; flushed every so many seconds; 10 s points kept
    # for the high-resolution retention, 1-minute points for the retention; the file
    # kept under a size (oldest points dropped first).
    metrics_history: bool = field(
        default_factory=lambda: (
            os.environ.get("MODELHOST_METRICS_HISTORY", "1").strip().lower()
            not in ("0", "false", "no", "off")
        )
    )
    metrics_flush_interval_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_METRICS_FLUSH_INTERVAL", 10.0)
    )
    metrics_high_res_retention_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_METRICS_HIGH_RES_RETENTION", 86400.0)
    )
    metrics_retention_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_METRICS_RETENTION", 15 * 86400.0)
    )
    metrics_max_bytes: int = field(
        default_factory=lambda: int(_env_float("MODELHOST_METRICS_MAX_MB", 512) * 1024**2)
    )
    # Loaded from policy_file (checked whole) when the settings are made.
    policies: Policies | None = field(default=None, init=False, repr=False, compare=False)
    # How often the state store and queue files are checked on disk while serving (/ping
    # turns 503 when one is damaged); the check reads the whole file, in a thread.
    store_check_interval_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_STORE_CHECK_INTERVAL", 30.0)
    )
    # Online backups of the state store and queue: every so many seconds (0: never) into
    # a folder (default <data-dir>/backups), keeping the newest few of each file.
    backup_interval_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_BACKUP_INTERVAL", 3600.0)
    )
    backup_folder: Path | None = field(default_factory=lambda: _env_path("MODELHOST_BACKUP_DIR"))
    backup_keep: int = field(default_factory=lambda: int(_env_float("MODELHOST_BACKUP_KEEP", 24)))
    # Client connections: closed after this long without a request (keep-alive, and a
    # new connection's first request line and headers), and a request whose body stops
    # arriving for this long is answered 408 and closed.
    idle_timeout_s: float = field(default_factory=lambda: _env_float("MODELHOST_IDLE_TIMEOUT", 5.0))
    body_timeout_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_BODY_TIMEOUT", 30.0)
    )

    def __post_init__(self) -> None:
        if state_scheme(self.state_url) == "sqlite":  # refuses an unsupported URL now
            _sqlite_state_file(self.state_url, self.data_dir)
        if self.s3 not in ("auto", "local", "aws"):
            raise ValueError(f"MODELHOST_S3 must be 'auto', 'local' or 'aws', not {self.s3!r}")
        if self.transform_part_bytes < 1:
            raise ValueError(
                f"MODELHOST_TRANSFORM_PART_BYTES={self.transform_part_bytes}: "
                "expected a number of bytes >= 1"
            )
        if not self.ray_address:
            raise ValueError(
                "MODELHOST_RAY_ADDRESS: expected auto, local, ray://host:port or host:port"
            )
        _check_instance_host(self.instance_host)
        if self.cgroups not in ("auto", "off"):
            raise ValueError(f"MODELHOST_CGROUPS={self.cgroups!r}: expected auto or off")
        if self.ping_interval_s <= 0 or self.ping_timeout_s <= 0:
            raise ValueError("MODELHOST_PING_INTERVAL and MODELHOST_PING_TIMEOUT must be > 0")
        if not 0 < self.cpu_scale <= 1024:
            raise ValueError(f"MODELHOST_CPU_SCALE={self.cpu_scale}: expected a number > 0")
        for name, value in (
            ("MODELHOST_STORE_CHECK_INTERVAL", self.store_check_interval_s),
            ("MODELHOST_LEASE_PERIOD", self.lease_period_s),
            ("MODELHOST_IDLE_TIMEOUT", self.idle_timeout_s),
            ("MODELHOST_BODY_TIMEOUT", self.body_timeout_s),
        ):
            if not value > 0:
                raise ValueError(f"{name}={value}: expected a number of seconds > 0")
        if not 0 < self.metrics_flush_interval_s <= 10:
            raise ValueError(
                f"MODELHOST_METRICS_FLUSH_INTERVAL={self.metrics_flush_interval_s}: "
                "expected seconds > 0 and <= 10 (the finest resolution kept)"
            )
        if not 0 < self.metrics_high_res_retention_s <= self.metrics_retention_s:
            raise ValueError(
                "MODELHOST_METRICS_HIGH_RES_RETENTION and MODELHOST_METRICS_RETENTION: "
                "expected seconds > 0, the high-resolution one no longer than the other"
            )
        if self.metrics_max_bytes < 1024**2:
            raise ValueError("MODELHOST_METRICS_MAX_MB: expected at least 1 (MB)")
        if self.backup_interval_s < 0:
            raise ValueError(
                f"MODELHOST_BACKUP_INTERVAL={self.backup_interval_s}: expected "
                "seconds >= 0 (0: no periodic backups)"
            )
        if self.backup_keep < 1:
            raise ValueError(f"MODELHOST_BACKUP_KEEP={self.backup_keep}: expected >= 1")
        if self.policy_file:
            object.__setattr__(
                self,
                "policies",
                Policies.load(Path(self.policy_file), self.access_keys, self.account_id),
            )

    @property
    def state_path(self) -> Path:
        """The embedded SQLite state store's file (whatever `state_url` says: the
        `modelhost state` commands and backups always mean this file)."""
        return self.data_dir / "state.db"

    @property
    def queue_path(self) -> Path:
        """The asynchronous inference queue: a sibling of the state store, so request
        traffic never waits on the control plane's lock."""
        return self.data_dir / "async-queue.db"

    @property
    def metrics_path(self) -> Path:
        """The metric history, beside the state store (see modelhost.history.store)."""
        return self.data_dir / "metrics.db"

    @property
    def backup_dir(self) -> Path:
        return self.backup_folder or self.data_dir / "backups"

    @property
    def objects_dir(self) -> Path:
        """Where `s3://bucket/key` lives when no S3 endpoint is configured."""
        return self.data_dir / "objects"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"
