"""An image pull as the user sees it: the engine's pull events turned into one line of
progress ("Pulling image X: 1 of 3 layers done, 12.0 of 30.0 MB"), and a pull error
turned into the failure that names the image.

Engines report differently: Docker Engine sends `Downloading` events with byte counts,
podman only a status per layer (`Pulling fs layer`, `Download complete`, `Already
exists`). The line says what the engine told, layers always and bytes when known.
Reports go out on every change of the layer count and at most once a second for byte
counts, so a large pull does not write the endpoint's record on every chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from modelhost.instances.images import ImageMissing

#: Layer statuses after which the engine holds the layer.
_DONE = {"download complete", "pull complete", "already exists"}
REPORT_INTERVAL_S = 1.0


class PullProgress:
    """Follows one pull's events; `report` (if any) gets each new progress line."""

    def __init__(self, image: str, report: Callable[[str], None] | None) -> None:
        self.image = image
        self._report = report
        self._layers: dict[str, tuple[int, int]] = {}  # id -> (bytes so far, total)
        self._done: set[str] = set()
        self._last: tuple[float, str] | None = None
        self.started = time.monotonic()

    def begin(self) -> None:
        """Report that the pull started, before the engine's first event."""
        self._send(force=True)

    def line(self) -> str:
        layers = f"{len(self._done)} of {len(self._layers)} layers done" if self._layers else ""
        total = sum(t for _, t in self._layers.values())
        got = sum(c for c, _ in self._layers.values())
        sized = f"{got / 1e6:.1f} of {total / 1e6:.1f} MB" if total else ""
        detail = ", ".join(part for part in (layers, sized) if part)
        return f"Pulling image {self.image}" + (f": {detail}" if detail else "")

    def note(self, event: dict[str, Any]) -> None:
        """Take one decoded event of the engine's pull stream; an error event raises."""
        if error := event.get("error") or (event.get("errorDetail") or {}).get("message"):
            raise ImageMissing(self.image, str(error).strip())
        layer = event.get("id")
        status = str(event.get("status", "")).lower()
        if not layer or not status or status.startswith(("pulling from", "digest", "status")):
            self._send(force=not self._last)
            return
        before = len(self._layers), len(self._done)
        detail = event.get("progressDetail") or {}
        current, total = self._layers.get(layer, (0, 0))
        if status == "downloading" and detail.get("total"):
            current, total = int(detail.get("current", 0)), int(detail["total"])
        if status in _DONE:
            self._done.add(layer)
            current = total
        self._layers[layer] = (current, total)
        self._send(force=(len(self._layers), len(self._done)) != before)

    def _send(self, force: bool) -> None:
        if self._report is None:
            return
        now, line = time.monotonic(), self.line()
        if self._last is not None and (
            line == self._last[1] or (not force and now < self._last[0] + REPORT_INTERVAL_S)
        ):
            return
        self._last = (now, line)
        self._report(line)
