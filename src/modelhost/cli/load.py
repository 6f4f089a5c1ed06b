"""`modelhost load`: drive load at an endpoint or any URL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelhost.cli import console
from modelhost.cli._shared import DEFAULT_URL, AsJson, EndpointUrl


def load(
    target: Annotated[
        str,
        typer.Argument(help="An endpoint name on --endpoint-url, or any http:// URL to POST to."),
    ],
    endpoint_url: EndpointUrl = DEFAULT_URL,
    phase: Annotated[
        list[str] | None,
        typer.Option(
            help="RATE:SECONDS, or START-END:SECONDS for a linear ramp; repeat for more phases. "
            "Requests/s in open loop, users in closed loop. Default 100:10."
        ),
    ] = None,
    closed: Annotated[
        bool,
        typer.Option(
            "--closed",
            help="Closed loop: each user waits for its answer before sending again "
            "(default: open loop, sent on schedule).",
        ),
    ] = False,
    body: Annotated[str | None, typer.Option(help="Request body, literally.")] = None,
    payload: Annotated[
        Path | None,
        typer.Option(
            exists=True, help="File or folder of sample payloads; each request picks one."
        ),
    ] = None,
    lines: Annotated[
        bool, typer.Option("--lines", help="One payload per line of the --payload file(s).")
    ] = False,
    content_type: Annotated[str, typer.Option(help="Content-Type of the body.")] = "text/csv",
    max_connections: Annotated[
        int, typer.Option(help="Connections (and requests in flight) at most.")
    ] = 256,
    timeout: Annotated[
        float, typer.Option(help="Seconds before a request counts as a timeout.")
    ] = 10.0,
    timeline: Annotated[
        bool,
        typer.Option(
            "--timeline", help="Also show every second: sent, answered, errors, p50, p99."
        ),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Drive load at an endpoint and report latency percentiles, throughput and errors."""
    from modelhost.loadgen import LoadSpec, read_payloads, run

    if (body is None) == (payload is None):
        console.error(
            "give one of --body or --payload: the request the load sends (an empty body "
            "is one most models answer with an error)"
        )
        raise typer.Exit(2)
    payloads = read_payloads(payload, lines) if payload is not None else ((body or "").encode(),)
    url = (
        target
        if target.startswith("http://")
        else (f"{endpoint_url.rstrip('/')}/endpoints/{target}/invocations")
    )
    try:
        phases = tuple(_parse_phase(text, closed) for text in (phase or ["100:10"]))
        spec = LoadSpec(
            url=url,
            phases=phases,
            mode="closed" if closed else "open",
            payloads=payloads,
            content_type=content_type,
            max_connections=max_connections,
            timeout_s=timeout,
        )
    except ValueError as exc:
        console.error(str(exc))
        raise typer.Exit(2) from None
    result = run(spec)
    if as_json:
        console.print_json(
            {
                "summary": result.summary(),
                "timeline": [
                    {k: v for k, v in second.to_json().items() if k != "histogram"}
                    for second in result.timeline
                ],
            }
        )
    else:
        console.load_report(result, timeline)
    if result.completed == 0:
        raise typer.Exit(1)


def _parse_phase(text: str, closed: bool) -> Any:
    from modelhost.loadgen import Phase

    try:
        level, seconds = text.split(":")
        start, _, end = level.partition("-")
        duration = float(seconds)
        if closed:
            return Phase(duration, users=int(start), end_users=int(end) if end else None)
        return Phase(duration, rate=float(start), end_rate=float(end) if end else None)
    except ValueError:
        raise ValueError(
            f"bad --phase {text!r}: expected LEVEL:SECONDS or START-END:SECONDS"
        ) from None
