"""The endpoint controller, one concept per module:

- `controller`: the reconcile loop, one operation in flight per endpoint
- `rollout`: deploying desired state (blue/green for a new config, in place for a new
  weight or count, rollback on failure), deleting, draining instances that leave
- `health`: `/ping` for every instance on a period; condemning one that hangs, or whose
  requests alone keep timing out
- `replacement`: replacing instances that died or were condemned
- `serverless`: serverless variants' warm and most instances, cold starts, idle stops
- `reporting`: the endpoint record's status and variants, the instance gauge and meter
- `fleet`: what those parts share
"""

from modelhost.controllers.endpoints.controller import EndpointController

__all__ = ["EndpointController"]
