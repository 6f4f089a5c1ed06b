"""The latency-vs-throughput chart of a recommendation job, as a PNG.

One line per candidate through its traffic steps (throughput on x, the job's latency
percentile on y), the latency bound as a horizontal line, and the recommended (cheapest)
candidate drawn bold. matplotlib is an optional extra (`pip install 'modelhost[plot]'`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelhost.domain.recommendations import candidate_label

INSTALL_HINT = "the chart needs matplotlib: pip install 'modelhost[plot]'"


def write_chart(curves: dict[str, Any], recommended: str | None, path: Path) -> None:
    """Raises ImportError (with INSTALL_HINT) when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = curves.get("Latency") or {"label": "P95"}
    figure, axes = plt.subplots(figsize=(8, 5))
    for candidate in curves["Candidates"]:
        points = candidate["Points"]
        if not points:
            continue
        label = candidate_label(candidate["Candidate"])
        best = label == recommended
        axes.plot(
            [p["throughput_rps"] for p in points],
            [p["latency_ms"] for p in points],
            marker="o",
            linewidth=3 if best else 1.2,
            label=f"{label} (recommended)" if best else label,
        )
    if "ms" in latency:
        axes.axhline(
            latency["ms"],
            color="red",
            linestyle="--",
            label=f"{latency['label']} bound {latency['ms']} ms",
        )
    axes.set_xlabel("throughput (requests/s)")
    axes.set_ylabel(f"{latency['label']} model latency (ms)")
    axes.set_title(f"recommendation job {curves['JobName']}")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
