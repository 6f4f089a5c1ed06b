"""CloudWatch alarms: the cost of the two wire protocols, and how soon a step scaling
policy acts once its alarm's metric crosses the threshold.

Why this shape:
- botocore talks JSON 1.0 to CloudWatch, other SDKs RPC v2 CBOR; both end in the same
  operations, so the same DescribeAlarms (all of --alarms alarms) is timed over raw HTTP
  in each encoding, one request at a time, alternating, with its answer size.
- Reaction: an iris endpoint (1..2 instances), a step policy +1 on an alarm
  InvocationsPerInstance > 60 (2 of 2 datapoints) and -1 on one < 10; closed-loop load
  from two client threads, then none. The server evaluates every --interval seconds over
  a --window-second window (MODELHOST_AUTOSCALING_INTERVAL / _WINDOW). Times are from
  the load's start (or stop) to the alarm state and the desired count seen by polling
  DescribeAlarms / DescribeEndpoint every 0.1 s.

Usage:
    python benchmarks/alarm_scaling.py [--alarms 100] [--calls 200] [--interval 0.5]
        [--window 3] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import cbor2
import orjson
from _common import (
    add_output_options,
    machine_table,
    publish,
    scratch_dir,
    sigterm_as_interrupt,
)
from tests.support.endpoints import deploy, undeploy
from tests.support.models import put_iris_model
from tests.support.server import ServerProcess

_SERVICE = "GraniteServiceVersion20100801"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def _call(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return len(response.read())


def _protocols(server: ServerProcess, calls: int) -> dict[str, tuple[float, float, int]]:
    """Median and p95 ms and answer bytes of DescribeAlarms in each encoding."""
    shapes: dict[str, Callable[[], int]] = {
        "JSON 1.0 (botocore)": lambda: _call(
            server.url,
            orjson.dumps({}),
            {
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"{_SERVICE}.DescribeAlarms",
            },
        ),
        "RPC v2 CBOR": lambda: _call(
            f"{server.url}/service/{_SERVICE}/operation/DescribeAlarms",
            cbor2.dumps({}),
            {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"},
        ),
    }
    times: dict[str, list[float]] = {label: [] for label in shapes}
    sizes: dict[str, int] = {}
    for _ in range(calls):
        for label, call in shapes.items():
            started = time.perf_counter()
            sizes[label] = call()
            times[label].append((time.perf_counter() - started) * 1000)
    return {
        label: (statistics.median(t), statistics.quantiles(t, n=20)[18], sizes[label])
        for label, t in times.items()
    }


def _until(check: Callable[[], bool], timeout_s: float = 120) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise RuntimeError("timed out")
        time.sleep(0.1)
    return time.monotonic() - started


def _reaction(server: ServerProcess) -> dict[str, float]:
    sm, aas = server.client("sagemaker"), server.client("application-autoscaling")
    cw, rt = server.client("cloudwatch"), server.client("sagemaker-runtime")
    name = deploy(sm, put_iris_model(server.data_dir))
    try:
        resource = f"endpoint/{name}/variant/AllTraffic"
        aas.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension=DIMENSION,
            MinCapacity=1,
            MaxCapacity=2,
        )
        arns = {}
        for policy, step in (
            ("out", {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}),
            ("in", {"MetricIntervalUpperBound": 0, "ScalingAdjustment": -1}),
        ):
            arns[policy] = aas.put_scaling_policy(
                PolicyName=policy,
                ServiceNamespace="sagemaker",
                ResourceId=resource,
                ScalableDimension=DIMENSION,
                PolicyType="StepScaling",
                StepScalingPolicyConfiguration={
                    "AdjustmentType": "ChangeInCapacity",
                    "Cooldown": 1,
                    "StepAdjustments": [step],
                },
            )["PolicyARN"]
        for alarm, operator, threshold, policy in (
            ("high", "GreaterThanThreshold", 60, "out"),
            ("low", "LessThanThreshold", 10, "in"),
        ):
            cw.put_metric_alarm(
                AlarmName=f"{name}-{alarm}",
                Namespace="AWS/SageMaker",
                MetricName="InvocationsPerInstance",
                Statistic="Average",
                Period=60,
                EvaluationPeriods=2,
                Threshold=threshold,
                ComparisonOperator=operator,
                Dimensions=[
                    {"Name": "EndpointName", "Value": name},
                    {"Name": "VariantName", "Value": "AllTraffic"},
                ],
                AlarmActions=[arns[policy]],
            )

        def state(alarm: str) -> str:
            return str(
                cw.describe_alarms(AlarmNames=[f"{name}-{alarm}"])["MetricAlarms"][0]["StateValue"]
            )

        def desired() -> int:
            return int(
                sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0][
                    "DesiredInstanceCount"
                ]
            )

        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                rt.invoke_endpoint(
                    EndpointName=name, ContentType="text/csv", Body="5.1,3.5,1.4,0.2"
                )
                stop.wait(0.02)

        threads = [threading.Thread(target=load) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            to_alarm = _until(lambda: state("high") == "ALARM")
            to_out = _until(lambda: desired() == 2) + to_alarm
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        low_alarm = _until(lambda: state("low") == "ALARM")
        to_in = _until(lambda: desired() == 1) + low_alarm
        return {
            "load → high ALARM": to_alarm,
            "load → desired 2": to_out,
            "no load → low ALARM": low_alarm,
            "no load → desired 1": to_in,
        }
    finally:
        undeploy(sm, name)


def report(
    protocols: dict[str, tuple[float, float, int]],
    reaction: dict[str, float],
    machine: list[str],
    args: Any,
) -> str:
    lines = [
        "# CloudWatch alarms",
        "",
        *machine,
        "",
        f"DescribeAlarms of {args.alarms} alarms, {args.calls} calls per encoding, "
        "alternating, one at a time:",
        "",
        "| protocol | median ms | p95 ms | answer bytes |",
        "|---|---|---|---|",
    ]
    for label, (median, p95, size) in protocols.items():
        lines.append(f"| {label} | {median:.2f} | {p95:.2f} | {size} |")
    lines += [
        "",
        f"Step scaling from alarms (evaluation every {args.interval:g} s over a "
        f"{args.window:g} s window, EvaluationPeriods 2):",
        "",
        "| event | seconds |",
        "|---|---|",
    ]
    lines += [f"| {event} | {seconds:.1f} |" for event, seconds in reaction.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alarms", type=int, default=100)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--window", type=float, default=3.0)
    add_output_options(parser, "alarm_scaling")
    args = parser.parse_args(argv)
    with sigterm_as_interrupt(), scratch_dir(args.keep_data) as scratch:
        server = ServerProcess(
            scratch / "data",
            env={
                "MODELHOST_AUTOSCALING_INTERVAL": str(args.interval),
                "MODELHOST_AUTOSCALING_WINDOW": str(args.window),
            },
        ).start()
        try:
            cw = server.client("cloudwatch")
            for index in range(args.alarms):
                cw.put_metric_alarm(
                    AlarmName=f"bench-{index:04d}",
                    Namespace="AWS/SageMaker",
                    MetricName="CPUUtilization",
                    Statistic="Average",
                    Period=60,
                    EvaluationPeriods=1,
                    Threshold=80,
                    ComparisonOperator="GreaterThanThreshold",
                    Dimensions=[{"Name": "EndpointName", "Value": "nowhere"}],
                )
            protocols = _protocols(server, args.calls)
            names = [f"bench-{i:04d}" for i in range(args.alarms)]
            for first in range(0, len(names), 100):  # DeleteAlarms takes 100 at most
                cw.delete_alarms(AlarmNames=names[first : first + 100])
            reaction = _reaction(server)
        finally:
            server.stop()
    publish(
        report(protocols, reaction, machine_table("urllib / boto3, one request at a time"), args),
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
