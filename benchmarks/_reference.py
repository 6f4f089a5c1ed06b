"""The floor the router hop is measured against: what a user would write instead of
modelhost, a hand-written uvicorn + starlette server with the model in its own process.

Same model file (the very `model.joblib` the endpoint's instance loads), same one-thread
BLAS, uvicorn's fastest configuration (uvloop, httptools, no access log), and the model
called on the event loop, as such a server does. It has none of what modelhost adds (no
isolation, no token, no health while a model call runs), which is the point: the
difference from it is everything modelhost costs a user's request.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import post
from tests.support.server import free_port

START_TIMEOUT_S = 60.0
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

APP = """
import os
import joblib, numpy as np, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

model = joblib.load(os.environ["REFERENCE_MODEL"])

async def invocations(request):
    return JSONResponse(model.predict(np.asarray(await request.json())).tolist())

app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(os.environ["REFERENCE_PORT"]), loop="uvloop",
            http="httptools", access_log=False, log_level="warning")
"""


class ReferenceServer:
    """uvicorn + starlette serving `model_dir/model.joblib` on a free port of 127.0.0.1."""

    def __init__(self, model_dir: Path, work_dir: Path) -> None:
        self.model = model_dir / "model.joblib"
        self.work_dir = work_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work_dir / "reference.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, probe: bytes, content_type: str) -> ReferenceServer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **ONE_THREAD,
            "REFERENCE_MODEL": str(self.model),
            "REFERENCE_PORT": str(self.port),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", APP],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"reference server exited: {self.log_tail()}")
            with contextlib.suppress(OSError):
                if post(f"{self.url}/invocations", probe, content_type)[0] == 200:
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"reference server not ready in {START_TIMEOUT_S:g} s")

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the reference server has not been started")
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
