"""What each request asks to do, in the terms of SigV4 and IAM: the service name its
signature must be scoped to, and the action and resource ARNs a policy is checked against.

Signing names are botocore's (`signingName` of each service model): the SageMaker control
plane and sagemaker-runtime both sign as `sagemaker`, Application Auto Scaling as
`application-autoscaling`, CloudWatch as `monitoring`, CloudWatch Logs as `logs`;
modelhost's own operations and routes are signed as `sagemaker`, as the modelhost CLI
signs them.

Actions are IAM's: `sagemaker:<Operation>` (the runtime's are `sagemaker:InvokeEndpoint`,
`sagemaker:InvokeEndpointWithResponseStream` and `sagemaker:InvokeEndpointAsync`),
`application-autoscaling:<Operation>`, `cloudwatch:<Operation>`, and `modelhost:<Name>`
for what only modelhost has (schedules, an endpoint's async requests, /metrics, load
curves). The resources are the ARNs of the names a request carries, SageMaker's in lower
case as SageMaker writes them; a request that names none (List*, most of Application
Auto Scaling) is checked against `*`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SAGEMAKER = "sagemaker"

# X-Amz-Target prefix -> (SigV4 signing name, IAM service prefix)
_TARGETS = {
    "SageMaker": (SAGEMAKER, "sagemaker"),
    "AnyScaleFrontendService": ("application-autoscaling", "application-autoscaling"),
    "GraniteServiceVersion20100801": ("monitoring", "cloudwatch"),
    "Modelhost": (SAGEMAKER, "modelhost"),
    "Logs_20140328": ("logs", "logs"),
}

# Top-level request members naming a SageMaker resource -> its ARN's resource type
_SAGEMAKER_NAMES = {
    "EndpointName": "endpoint",
    "EndpointConfigName": "endpoint-config",
    "ModelName": "model",
    "TransformJobName": "transform-job",
    "JobName": "inference-recommendations-job",
    "ModelPackageGroupName": "model-package-group",
    "ModelPackageName": "model-package",
}
# Members that hold an ARN.
_SAGEMAKER_ARNS = ("ResourceArn", "ModelPackageArn")


@dataclass(frozen=True)
class Access:
    action: str
    resources: list[str]


@dataclass(frozen=True)
class Arns:
    """Builds the ARNs of this server's region and account."""

    region: str
    account_id: str

    def sagemaker(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{kind}/{name.lower()}"

    def alarm(self, name: str) -> str:
        return f"arn:aws:cloudwatch:{self.region}:{self.account_id}:alarm:{name}"

    def log_group(self, name: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{name}"

    def schedule(self, name: str) -> str:
        return f"arn:aws:modelhost:{self.region}:{self.account_id}:schedule/{name}"


def signing_service(target: str) -> str:
    """The service a control-plane call's signature must be scoped to (`sagemaker` for
    an unknown target, which the operation lookup then refuses)."""
    return _TARGETS.get(target.partition(".")[0], (SAGEMAKER, ""))[0]


def control(target: str, params: Any, arns: Arns) -> Access:
    """A control-plane call `Service.Operation` with its decoded parameters."""
    prefix, _, operation = target.partition(".")
    service = _TARGETS.get(prefix, (SAGEMAKER, prefix.lower() or "unknown"))[1]
    resources: list[str] = []
    if isinstance(params, dict):
        if service == "sagemaker":
            for member, kind in _SAGEMAKER_NAMES.items():
                value = params.get(member)
                if isinstance(value, str) and not value.startswith("arn:"):
                    resources.append(arns.sagemaker(kind, value))
            resources += [params[m] for m in _SAGEMAKER_ARNS if isinstance(params.get(m), str)]
            package = params.get("ModelPackageName")  # a name or a versioned package's ARN
            if isinstance(package, str) and package.startswith("arn:"):
                resources.append(package)
        elif service == "cloudwatch":
            names = params.get("AlarmNames")
            names = names if isinstance(names, list) else [params.get("AlarmName")]
            resources += [arns.alarm(n) for n in names if isinstance(n, str)]
        elif service == "modelhost" and isinstance(params.get("ScheduleName"), str):
            resources.append(arns.schedule(params["ScheduleName"]))
        elif service == "logs" and isinstance(params.get("logGroupName"), str):
            resources.append(arns.log_group(params["logGroupName"]))
    return Access(f"{service}:{operation}", resources or ["*"])


def endpoint(action: str, name: str, arns: Arns) -> Access:
    """A request about one endpoint: `sagemaker:InvokeEndpoint`, `modelhost:...`."""
    return Access(action, [arns.sagemaker("endpoint", name)])
