"""Application Auto Scaling on a test server: a server whose controller evaluates every
half second over a three-second window, a variant's resource ID and counts, and client
threads that load an endpoint until stopped."""

from __future__ import annotations

import datetime
import threading

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
FAST_AUTOSCALING = {
    "MODELHOST_AUTOSCALING_INTERVAL": "0.5",
    "MODELHOST_AUTOSCALING_WINDOW": "3",
    "MODELHOST_MAX_INSTANCES": "12",
}


def resource_id(name: str, variant: str = "AllTraffic") -> str:
    return f"endpoint/{name}/variant/{variant}"


def register(aas, name: str, low: int, high: int, **extra) -> None:
    aas.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id(name),
        ScalableDimension=DIMENSION,
        MinCapacity=low,
        MaxCapacity=high,
        **extra,
    )


def schedule_range(aas, name: str, low: int, high: int, in_s: float = 2) -> None:
    """A one-time scheduled action ("morning") that sets the variant's range `in_s`
    seconds from now."""
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=in_s)
    aas.put_scheduled_action(
        ServiceNamespace="sagemaker",
        ScheduledActionName="morning",
        ResourceId=resource_id(name),
        ScalableDimension=DIMENSION,
        Schedule=f"at({soon:%Y-%m-%dT%H:%M:%S})",
        ScalableTargetAction={"MinCapacity": low, "MaxCapacity": high},
    )


def counts(sm, name: str) -> tuple[str, int, int]:
    described = sm.describe_endpoint(EndpointName=name)
    variant = described["ProductionVariants"][0]
    return (
        described["EndpointStatus"],
        variant["CurrentInstanceCount"],
        variant["DesiredInstanceCount"],
    )


class Load:
    """Client threads calling the endpoint until stopped; every failure is kept. `extra`
    is more of InvokeEndpoint's parameters (InferenceComponentName)."""

    def __init__(
        self,
        rt,
        name: str,
        clients: int,
        body: str,
        content_type: str,
        pause_s: float = 0.0,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.failures: list[Exception] = []
        self._answers: list[int] = []  # list.append is atomic across threads; += is not
        self._stop = threading.Event()

        def call() -> None:
            while not self._stop.is_set():
                try:
                    rt.invoke_endpoint(
                        EndpointName=name, ContentType=content_type, Body=body, **(extra or {})
                    )
                    self._answers.append(1)
                except Exception as exc:
                    self.failures.append(exc)
                if pause_s:
                    self._stop.wait(pause_s)

        self._threads = [threading.Thread(target=call) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    @property
    def answered(self) -> int:
        return len(self._answers)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
