"""Whether the kernel's OOM killer ended a container, when its engine does not say.

Docker Engine, and podman on cgroup v2, set `State.OOMKilled` on a container the kernel
killed for passing its memory limit. podman with runc on a cgroup v1 host leaves it false
(measured: podman 4.3 on Debian 12), so such a kill looks like any SIGKILL (exit code
137). The kernel logs every OOM kill with the memory cgroup it happened in, and a
container's cgroup path carries its full id (`/libpod_parent/libpod-<id>`,
`/docker/<id>`, `docker-<id>.scope`), so the log answers for a container on this host.
Reading it needs root (`/dev/kmsg`); where it cannot be read the answer is "not known"
and the report says only that the container was killed.
"""

from __future__ import annotations

import contextlib
import os

KMSG = "/dev/kmsg"


def kernel_oom_killed(container_id: str, kmsg: str = KMSG) -> bool:
    """Whether the kernel log holds an OOM kill in `container_id`'s memory cgroup."""
    if len(container_id) < 12:
        return False
    try:
        fd = os.open(kmsg, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                return False  # the end of the log
            except BrokenPipeError:
                continue  # records overwritten while reading: read on
            except OSError:
                return False
            if not record:
                return False
            message = record.decode(errors="replace")
            if "oom-kill:" in message and "oom_memcg=" in message:
                memcg = message.split("oom_memcg=", 1)[1].split(",", 1)[0]
                if container_id in memcg:
                    return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
