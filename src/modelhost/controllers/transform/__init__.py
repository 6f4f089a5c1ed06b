"""The transform job controller, one concept per module:

- `controller`: a job's lifecycle (start, resume, stop, finish) and the streaming of each
  input object through mini-batches
- `job`: what one running job needs at hand, and the failure that ends it
- `instances`: the instances a job runs on
- `journal`: the durable, ordered journal of output parts a restarted server resumes from
- `invoke`: one mini-batch through the model, with retries, and the bisection that names
  the record a model refuses
"""

from modelhost.controllers.transform.controller import TransformController

__all__ = ["TransformController"]
