"""The fork server: model-server processes forked from a pre-warmed parent.

Starting an instance as a fresh interpreter spends most of its time importing: Python
itself, numpy, scikit-learn, uvicorn and the model server. A serverless endpoint pays that
on every cold start. The fork server is a separate process that has done those imports once
(with every BLAS/OpenMP pool at one thread, so no thread exists when it forks) and forks a
child per instance; the child only sets its environment, loads its model and listens.

The server talks to it over a socketpair, one JSON document per line:

    -> {"id": 1, "env": {...}, "log": "/path/instance.log" | null}
    <- {"id": 1, "pid": 4242}            or {"id": 1, "error": "..."}
    <- {"exited": 4242, "code": -15}      whenever a child ends (it is reaped here)

It exits when the socket closes (the server ended), and is killed by the kernel when the
server dies (a parent-death signal), so a SIGKILLed server takes it along at once. Its
children, in turn, die with it (:mod:`modelhost.modelserver.confine`), each taking its
own descendants. It knows nothing secret: its environment is allow-listed like an
instance's, and each request names only a launch file that the child, not the fork
server, reads.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
from typing import Any

from modelhost.modelserver.confine import parent_death_signal

#: Imported once by the fork server; what is missing (an optional extra) is skipped.
PRELOAD = (
    "numpy",
    "joblib",
    "sklearn",
    "sklearn.base",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.tree",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.svm",
    "sklearn.neighbors",
    "threadpoolctl",
    "uvicorn",
    "uvicorn.protocols.http.httptools_impl",
    "uvloop",
    "orjson",
    "modelhost.modelserver.__main__",
    "modelhost.modelserver.app",
    "modelhost.modelserver.handlers",
    "modelhost.modelserver.codecs",
    "modelhost.modelserver.frameworks",
    # Not onnxruntime: importing it starts a native thread, and forking a process with a
    # second thread risks a child stuck on a lock that thread held.
)

#: Set to one thread in the fork server itself; each child raises them to its share.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def _preload() -> None:
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _child(env: dict[str, str], log: str | None) -> int:
    """Runs in the forked child: become the instance, serve, return its exit status."""
    os.setsid()  # like start_new_session: a Ctrl-C on the server's terminal is not ours
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if log else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    # What PYTHONUNBUFFERED gives a fresh interpreter: output reaches the log as it comes.
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(env)
    from modelhost.modelserver.__main__ import main

    return main([])


def _threads() -> int:
    """Threads of this process, native ones included (`threading` sees only Python's)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 1


def _fork(inherited: list[int], env: dict[str, str], log: str | None) -> int:
    # Forking with a second thread alive would copy whatever lock it held into a child
    # that can never release it. The fork server never starts one; if an import ever
    # does, it refuses, and the backend starts that instance as a fresh interpreter.
    threads = _threads()
    if threads > 1:
        raise OSError(f"the fork server has {threads} threads; forking is not safe")
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for fd in inherited:  # the server's socket, the wake-up pipe, the selector
            with contextlib.suppress(OSError):
                os.close(fd)
        code = _child(env, log)
    except BaseException as exc:  # the child must never return into the server loop
        with contextlib.suppress(Exception):
            print(f"modelhost.modelserver: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code if isinstance(code, int) else 1)
    raise AssertionError("unreachable")


def _reap(send: Any) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        send({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(fd: int, parent: int) -> None:
    """Fork instances on request until the server's end of the socket closes."""
    parent_death_signal(signal.SIGKILL)  # the server's death is ours
    if os.getppid() != parent:
        return
    conn = socket.socket(fileno=fd)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        _serve(conn)


def _serve(conn: socket.socket) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops us by closing the socket
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _preload()
    # Keep what the preload created out of the collector's reach: a child's collections
    # would otherwise write to every shared page and undo copy-on-write.
    gc.freeze()

    def send(message: dict[str, Any]) -> None:
        conn.sendall(json.dumps(message).encode() + b"\n")

    send({"ready": True, "pid": os.getpid()})
    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    buffer = b""
    while True:
        for key, _ in selector.select():
            if key.fileobj == wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                _reap(send)
                continue
            data = conn.recv(65536)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                try:
                    pid = _fork(
                        [conn.fileno(), wake_r, wake_w, selector.fileno()],
                        request["env"],
                        request.get("log"),
                    )
                except OSError as exc:
                    send({"id": request["id"], "error": str(exc)})
                else:
                    send({"id": request["id"], "pid": pid})
        _reap(send)
