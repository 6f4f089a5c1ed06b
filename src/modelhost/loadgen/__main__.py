"""`python -m modelhost.loadgen`: read a LoadSpec as JSON on stdin, run it, print the
LoadResult as JSON on stdout (see `process.py`)."""

from __future__ import annotations

import json
import sys

from modelhost.loadgen import LoadSpec, run


def main() -> None:
    spec = LoadSpec.from_json(json.load(sys.stdin))
    json.dump(run(spec).to_json(), sys.stdout)


if __name__ == "__main__":
    main()
