"""Pull progress from both engines' event streams: Docker Engine's byte counts and
podman's per-layer statuses, and a pull error naming the image."""

from __future__ import annotations

import pytest

from modelhost.instances.images import ImageMissing
from modelhost.instances.pulls import PullProgress

IMAGE = "registry.example:5000/team/model:1"


def test_podman_events_count_layers() -> None:
    lines: list[str] = []
    pull = PullProgress(IMAGE, lines.append)
    pull.begin()
    pull.note({"status": "Already exists", "progressDetail": {}, "id": "a"})
    pull.note({"status": "Pulling fs layer", "progressDetail": {}, "id": "b"})
    pull.note({"status": "Download complete", "progressDetail": {}, "id": "b"})
    assert lines == [
        f"Pulling image {IMAGE}",
        f"Pulling image {IMAGE}: 1 of 1 layers done",
        f"Pulling image {IMAGE}: 1 of 2 layers done",
        f"Pulling image {IMAGE}: 2 of 2 layers done",
    ]


def test_docker_events_show_bytes_at_most_once_a_second() -> None:
    lines: list[str] = []
    pull = PullProgress(IMAGE, lines.append)
    pull.note({"status": "Pulling from team/model", "id": "1"})
    pull.note({"status": "Pulling fs layer", "progressDetail": {}, "id": "a"})
    for current in (1_000_000, 2_000_000, 3_000_000):
        detail = {"current": current, "total": 10_000_000}
        pull.note({"status": "Downloading", "progressDetail": detail, "id": "a"})
    # The byte counts within the same second are not each reported; the line is.
    assert pull.line() == f"Pulling image {IMAGE}: 0 of 1 layers done, 3.0 of 10.0 MB"
    assert len(lines) == 2
    pull.note({"status": "Pull complete", "progressDetail": {}, "id": "a"})
    assert lines[-1] == f"Pulling image {IMAGE}: 1 of 1 layers done, 10.0 of 10.0 MB"


def test_an_error_event_fails_naming_the_image() -> None:
    pull = PullProgress(IMAGE, None)
    with pytest.raises(ImageMissing) as raised:
        pull.note({"error": "manifest unknown", "errorDetail": {"message": "manifest unknown"}})
    assert IMAGE in str(raised.value) and "manifest unknown" in str(raised.value)
