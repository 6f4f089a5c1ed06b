"""Payload sampling: the request bodies a recommendation job's load is made of, read once
from its SamplePayloadUrl."""

from __future__ import annotations

import contextlib
import io
import tarfile

from modelhost.storage import ObjectStore

MAX_PAYLOADS = 1000
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


class NoPayloads(ValueError):
    """The job's SamplePayloadUrl gives nothing to send: the caller's to fix, so the job
    fails with this reason and no traceback."""


def sample_payloads(objects: ObjectStore, uri: str) -> tuple[bytes, ...]:
    """SamplePayloadUrl: a tar(.gz) of payload files (as SageMaker expects), a prefix of
    payload objects, or one object used as the only payload."""
    if objects.is_file(uri):
        data = objects.get_bytes(uri)
        payloads: list[bytes] = []
        with (
            contextlib.suppress(tarfile.TarError),
            tarfile.open(fileobj=io.BytesIO(data)) as archive,
        ):
            for member in archive:
                if member.isfile() and member.size <= MAX_PAYLOAD_BYTES:
                    file = archive.extractfile(member)
                    if file is not None:
                        payloads.append(file.read())
                if len(payloads) >= MAX_PAYLOADS:
                    break
        return tuple(payloads) if payloads else (data,)
    uris = objects.list(uri)[:MAX_PAYLOADS]
    if not uris:
        raise NoPayloads(f"SamplePayloadUrl {uri} holds no payloads")
    return tuple(objects.get_bytes(u) for u in uris)
