"""Inference components: where an invocation with `InferenceComponentName` goes.

Each component's copies are replicas in a pool of their own, picked by least outstanding
requests like a variant's instances. The endpoint controller keeps these routes (the
component controller publishes one as soon as it sees the component, copies or not). A
request for a component with no copy waits for one, at most the model timeout, while a
copy starts or the component scales out from zero; a component whose desired copy count
is 0 and that nothing may scale out refuses it at once (the caller has to raise the copy
count). A request without the header never enters this module.

A component whose endpoint another server sharing the state store runs is routed from the
copies that server publishes (`Router.shared_components`, kept by the instance registry);
scaling it out from zero is that server's to do, so a request for it at zero copies is
answered with a retriable 503 naming that server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from modelhost.errors import InvocationValidationError, ServiceUnavailable
from modelhost.router.pool import VariantPool

MAX_UNTAKEN = 100_000


@dataclass(eq=False)
class ComponentRoute:
    name: str
    endpoint: str
    variant: str
    pool: VariantPool
    #: DesiredCopyCount as the controller last read it.
    desired: int = 0
    #: A scalable target lets Application Auto Scaling add a copy from zero.
    scalable_from_zero: bool = False
    #: Requests so far, a running count (what InvocationsPerCopy is a rate of).
    invocations: int = 0
    #: Of those, the ones that failed with a 4XX (a ModelError is a 424) and a 5XX.
    errors_4xx: int = 0
    errors_5xx: int = 0
    #: A request found no copy: the controller scales out from zero on its next pass.
    demanded: bool = False
    #: Wakes the controller (set by it).
    wake: Callable[[], None] = field(default=lambda: None)
    #: (model seconds, overhead seconds) of each answer the metrics history has not
    #: taken yet (ModelLatency, OverheadLatency by InferenceComponentName); at most
    #: `MAX_UNTAKEN`, the newest, when no history takes them.
    latencies: list[tuple[float, float]] = field(default_factory=list)
    #: The server that runs the copies, when it is another one sharing the state store.
    owner: str | None = None

    def failed(self, status: int) -> None:
        if status < 500:
            self.errors_4xx += 1
        else:
            self.errors_5xx += 1

    def answered(self, model_seconds: float, overhead_seconds: float) -> None:
        if len(self.latencies) >= MAX_UNTAKEN:
            del self.latencies[: MAX_UNTAKEN // 2]
        self.latencies.append((model_seconds, overhead_seconds))

    def take_latencies(self) -> list[tuple[float, float]]:
        taken, self.latencies = self.latencies, []
        return taken

    def demand(self) -> None:
        if not self.demanded:
            self.demanded = True
            self.wake()


def unknown_component(name: str, endpoint: str) -> InvocationValidationError:
    return InvocationValidationError(
        f"Inference component {name} was not found on endpoint {endpoint}."
    )


def no_copies(route: ComponentRoute) -> InvocationValidationError:
    return InvocationValidationError(
        f"Inference component {route.name} has no copies to serve the request: its desired "
        "copy count is 0 and no scalable target allows it more. Raise it with "
        "UpdateInferenceComponentRuntimeConfig or register a scalable target."
    )


def scaled_elsewhere(route: ComponentRoute, owner: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"Inference component {route.name} has no copies and runs on another modelhost "
        f"server ({owner}) that shares this state store; only that server scales it out "
        "from zero. Retry the request on that server."
    )


def components_only(endpoint: str) -> InvocationValidationError:
    return InvocationValidationError(
        f"Endpoint {endpoint} hosts inference components: the InferenceComponentName "
        "parameter is required."
    )
