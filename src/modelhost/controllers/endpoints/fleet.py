"""What the parts of the endpoint controller share: where desired state lives, what
starts instances, the router that serves them, and the background work they spawn.

One object rather than each part holding its own references, so a replacement started by
the health path and a deployment started by the rollout path number their instances from
the same counter and see the same live desired state.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from modelhost.capture import CaptureWriter
from modelhost.config import Settings
from modelhost.instances import InstanceBackend
from modelhost.router import Router
from modelhost.storage import LoopStore, ObjectStore


@dataclass(eq=False)
class Fleet:
    settings: Settings
    store: LoopStore
    objects: ObjectStore
    backend: InstanceBackend
    router: Router
    # Data capture for every endpoint's deployments (DataCaptureConfig).
    capture: CaptureWriter
    # Instance numbers, unique over the server's life: each instance gets its own log.
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # The desired state each live deployment was deployed from, by endpoint.
    desired: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Replacements, kills, serverless starts and stops: cancelled at shutdown.
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
