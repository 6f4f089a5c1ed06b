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

from modelhost.modelserver.errors import StartupError, describe
from modelhost.modelserver.limits import join_cgroups, limit_memory
from modelhost.modelserver.parent import watch_parent
from modelhost.modelserver.server import serve
from modelhost.modelserver.settings import Settings

PROG = "modelhost.modelserver"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args != ["serve"]:
        print(f"{PROG}: unsupported arguments {' '.join(args)!r}; only 'serve' is accepted",
              file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        join_cgroups(settings.cgroup_procs)
        if settings.memory_limit_mb is not None:
            limit_memory(settings.memory_limit_mb)
        if settings.parent_pid is not None:
            watch_parent(settings.parent_pid)
        serve(settings)
    except StartupError as exc:
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # uvicorn exits this way when it cannot bind
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        print(f"{PROG}: {describe(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A model call stuck in a worker thread must not keep the process alive after shutdown.
    os._exit(code)
