"""Running a script with the official sagemaker SDK against a server, as a user would:
a fresh process whose only pointer to modelhost is AWS_ENDPOINT_URL (plus a key and a
region), and the SDK's own config file for what the SDK cannot be told any other way.

The config file names the default bucket (`Session.default_bucket()` otherwise asks the
regional STS endpoint it builds itself, ignoring AWS_ENDPOINT_URL), the models' execution
role (`get_execution_role()` goes to that same STS endpoint), and opts out of the SDK's
telemetry (a call to an AWS bucket).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.aws import TEST_ENV

ROLE = "arn:aws:iam::000000000000:role/modelhost"
SDK_CONFIG = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
      Session:
        DefaultS3Bucket: {bucket}
  Model:
    ExecutionRoleArn: {role}
"""


def sdk_installed() -> bool:
    """Whether the SDK is importable (found, not imported: it is slow to import and
    warns on import)."""
    return importlib.util.find_spec("sagemaker") is not None


def run_sdk(url: str, home: Path, script: str, bucket: str, timeout_s: float = 240) -> Any:
    """Run `script` (Python using the sagemaker SDK) in its own process; it prints its
    result as a line `RESULT <json>`, returned with the output. Fails with the output
    when it exits with an error."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "sagemaker-config.yaml"
    config.write_text(SDK_CONFIG.format(bucket=bucket, role=ROLE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    env |= {
        **TEST_ENV,
        "AWS_ENDPOINT_URL": url,
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config),
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
        "HOME": str(home),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    marker = "\nRESULT "
    if done.returncode != 0 or marker not in "\n" + done.stdout:
        raise AssertionError(
            f"sagemaker SDK script failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
            f"{done.stderr[-6000:]}"
        )
    result = ("\n" + done.stdout).rsplit(marker, 1)[1].splitlines()[0]
    return {"result": json.loads(result), "stdout": done.stdout, "stderr": done.stderr}
