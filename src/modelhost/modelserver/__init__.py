"""The in-instance model server: the SageMaker container contract over the toolkit handlers.

Runs as its own process (``python -m modelhost.modelserver``), configured by environment
variables, one per instance. The control plane imports this package only for the names below
(the environment variable names when it launches an instance, the framework names a Model may
ask for); it never runs model code. Importing it is cheap: no numpy, no uvicorn. The server
itself lives in ``server``/``handlers``/``app``, loaded only by the instance process.
"""

from modelhost.modelserver.context import Context
from modelhost.modelserver.errors import (
    BadRequestError,
    InferenceError,
    StartupError,
    UnsupportedAcceptError,
    UnsupportedContentTypeError,
)
from modelhost.modelserver.parent import pid_alive
from modelhost.modelserver.settings import (
    BATCH_SIZE_HEADER,
    ENV_DEFAULT_ACCEPT,
    ENV_FRAMEWORK,
    ENV_HOST,
    ENV_MODEL_DIR,
    ENV_MULTI_MODEL,
    ENV_PARENT_PID,
    ENV_PORT,
    ENV_PROGRAM,
    ENV_SUBMIT_DIRECTORY,
    ENV_WORKERS,
    FRAMEWORK_NAMES,
    QUEUE_WAIT_HEADER,
    Settings,
)

__all__ = [
    "BATCH_SIZE_HEADER",
    "ENV_DEFAULT_ACCEPT",
    "ENV_FRAMEWORK",
    "ENV_HOST",
    "ENV_MODEL_DIR",
    "ENV_MULTI_MODEL",
    "ENV_PARENT_PID",
    "ENV_PORT",
    "ENV_PROGRAM",
    "ENV_SUBMIT_DIRECTORY",
    "ENV_WORKERS",
    "FRAMEWORK_NAMES",
    "QUEUE_WAIT_HEADER",
    "BadRequestError",
    "Context",
    "InferenceError",
    "Settings",
    "StartupError",
    "UnsupportedAcceptError",
    "UnsupportedContentTypeError",
    "pid_alive",
]
