"""The inference recommender, one concept per module:

- `controller`: a job's lifecycle (run, stop, resume, finish) and each candidate's traffic
  steps
- `candidates`: a candidate's temporary endpoint name and its failed benchmark
- `temporary_endpoints`: the endpoints candidates are measured on, made and removed
  through the control plane
- `usage`: CPU and memory readings of a candidate's instances
- `scoring`: a step's point, a candidate's benchmark and cost, the ranked recommendations
- `payloads`: the request bodies sampled from SamplePayloadUrl
"""

from modelhost.controllers.recommender.controller import RecommendationController

__all__ = ["RecommendationController"]
