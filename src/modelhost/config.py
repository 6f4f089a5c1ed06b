"""Server settings: one place that says where state lives and how instances run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from modelhost.auth import access_keys_from_environment


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8765
    region: str = "us-east-1"
    account_id: str = "000000000000"
    instance_backend: str = "process"
    # Limits SageMaker applies to real-time endpoints.
    max_payload_bytes: int = 6 * 1024 * 1024
    model_timeout_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_MODEL_TIMEOUT", 60.0)
    )
    # How long an instance may take to answer /ping after it starts.
    startup_timeout_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_STARTUP_TIMEOUT", 120.0)
    )
    health_interval_s: float = field(
        default_factory=lambda: _env_float("MODELHOST_HEALTH_INTERVAL", 1.0)
    )
    # Every instance is a process on this machine: an InitialInstanceCount typo must not
    # start hundreds of them. SageMaker has per-account instance quotas for the same reason.
    max_instances: int = field(
        default_factory=lambda: int(_env_float("MODELHOST_MAX_INSTANCES", 64))
    )
    # SigV4 access keys (access key id -> secret); empty: signatures are not checked.
    access_keys: dict[str, str] = field(default_factory=access_keys_from_environment)
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

    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.db"

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
