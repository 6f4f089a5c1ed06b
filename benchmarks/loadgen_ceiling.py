"""How fast modelhost's load generator is: one process against a null server.

`modelhost load` (src/modelhost/loadgen) has to out-run what it measures, so this drives
the null responder (`python -m modelhost.loadgen.responder`, an HTTP/1.1 server that
answers at once) at rising open-loop rates, then closed-loop with 1 and 16 users, and
reports what was sent, what came back, the latencies, and the CPU the generator process
used. The rate at which achieved throughput falls short of the offered rate, or latency
climbs away from the null server's, is the generator's ceiling on this machine.

Both processes share the machine's cores, so on a 2-core machine the figures are a lower
bound on the generator alone.

Usage:
    python benchmarks/loadgen_ceiling.py [--duration 5] [--rates 1000,2500,5000,7500,10000]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
import urllib.request

from _common import machine_facts
from tests.support.server import free_port

from modelhost.loadgen import LoadSpec, Phase, run


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rates", default="1000,2500,5000,7500,10000")
    parser.add_argument("--users", default="1,16")
    args = parser.parse_args()

    port = free_port()
    responder = subprocess.Popen([sys.executable, "-m", "modelhost.loadgen.responder", str(port)])
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        rows = []
        runs = [("open", float(r)) for r in args.rates.split(",")]
        runs += [("closed", float(u)) for u in args.users.split(",")]
        for mode, level in runs:
            phase = (
                Phase(args.duration, rate=level)
                if mode == "open"
                else Phase(args.duration, users=int(level))
            )
            cpu = _own_cpu_s()
            result = run(
                LoadSpec(
                    url=url,
                    phases=(phase,),
                    mode=mode,  # type: ignore[arg-type]
                    payloads=(b"[[5.1, 3.5, 1.4, 0.2]]",),
                )
            )
            cpu = _own_cpu_s() - cpu
            s = result.summary()
            offered = f"{level:,.0f} req/s" if mode == "open" else f"{level:.0f} users"
            rows.append(
                (
                    f"{mode}, {offered}",
                    f"{s['sent']:,}",
                    f"{s['throughput_rps']:,.0f}",
                    f"{s['p50_ms']:.3f}",
                    f"{s['p99_ms']:.3f}",
                    f"{s['max_ms']:.2f}",
                    str(s["errors"]),
                    f"{cpu / max(result.sent, 1) * 1e6:.0f}",
                    f"{cpu / result.duration_s:.2f}",
                )
            )
    finally:
        responder.terminate()
        responder.wait(10)

    for key, value in machine_facts("modelhost.loadgen (this run)").items():
        print(f"- {key}: {value}")
    header = (
        "run",
        "sent",
        "answered/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "generator CPU µs/req",
        "generator cores",
    )
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
