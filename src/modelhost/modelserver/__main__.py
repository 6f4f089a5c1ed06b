"""``python -m modelhost.modelserver [serve]``: the instance's entry point.

Configured only by environment variables (see :mod:`modelhost.modelserver.settings`). The
optional ``serve`` argument is what SageMaker passes to an image (``docker run image serve``).
A startup failure ends with one line on stderr, ``modelhost.modelserver: <reason>``, and exit
status 1: the launcher turns the log's last line into the endpoint's FailureReason.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

from modelhost.modelserver import confine, preload, spare
from modelhost.modelserver.errors import StartupError, describe
from modelhost.modelserver.limits import join_cgroups, limit_memory
from modelhost.modelserver.parent import watch_parent
from modelhost.modelserver.settings import ENV_TOKEN, Settings

PROG = "modelhost.modelserver"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args != ["serve"]:
        print(
            f"{PROG}: unsupported arguments {' '.join(args)!r}; only 'serve' is accepted",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    parent = os.getppid()
    try:
        # A spare waits here, imports done, for the environment that makes it an instance.
        spare.wait_for_assignment()
        # The order is the point: see modelhost.modelserver.confine.
        confine.load_launch_file()
        settings = Settings.from_env()
        os.environ.pop(ENV_TOKEN, None)  # not for the processes the model starts
        join_cgroups(settings.cgroup_procs)
        if settings.memory_limit_mb is not None:
            limit_memory(settings.memory_limit_mb)
        confine.become_subreaper()
        confine.drop_privileges()
        confine.die_with_parent(parent)
        confine.end_tree_on_sigterm()
        if settings.parent_pid is not None:
            watch_parent(settings.parent_pid)
        _thread_limits()
        # Now, with the thread counts and the user final: see modelhost.modelserver.preload.
        preload.start(settings.framework)
        # Imported only now: numpy (imported with the handlers) reads its thread counts
        # from the environment the launch file completed.
        from modelhost.modelserver.server import serve

        serve(settings)
    except StartupError as exc:
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # model code may end the process this way
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        print(f"{PROG}: {describe(exc)}", file=sys.stderr)
        return 1
    finally:
        confine.end_tree()
    return 0


def _thread_limits() -> None:
    """A forked instance has numpy's pools already (at one thread, the fork server's):
    raise them to this instance's share."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if "numpy" in sys.modules and threads.isdigit() and int(threads) > 1:
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(threads))


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A model call stuck in a worker thread must not keep the process alive after shutdown.
    os._exit(code)
