"""``python -m benchmarks``: every benchmark with small defaults (a few minutes on 2 cores).

Each prints its own table; the big runs take flags, see docs/performance.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from . import (
    convergence,
    detection,
    endpoint,
    footprint,
    lifecycle,
    masterlist,
    merge,
    monitor,
    ownership,
    simulate,
    store,
)

QUICK = {
    "merge": (merge.main, ["--sizes", "10,100,1000,10000", "--budget", "1"]),
    "store": (store.main, []),
    "endpoint": (endpoint.main, ["--sizes", "100,1000", "--seconds", "3", "--rounds", "2"]),
    "monitor": (monitor.main, ["--sizes", "100,1000", "--seconds", "10"]),
    "convergence": (convergence.main, ["--sizes", "5,10"]),
    "detection": (detection.main, ["--runs", "1", "--window", "15"]),
    "lifecycle": (lifecycle.main, ["--runs", "2", "--nodes", "3,5"]),
    "masterlist": (masterlist.main, ["--nodes", "100"]),
    "footprint": (footprint.main, ["--sizes", "100,1000", "--seconds", "10"]),
    "ownership": (ownership.main, ["--sim-sizes", "100", "--keys", "200", "--step", "0.5"]),
    # The quick run's CSV and plot go to a temp folder: docs/_static holds the big runs'.
    "simulate": (
        simulate.main,
        [
            "--sizes",
            "100",
            "--seeds",
            "5",
            "--alarm-rounds",
            "120",
            "--asymmetric",
            "1",
            "--out",
            str(Path(tempfile.gettempdir(), "clustershazbot-bench")),
        ],
    ),
}


def main(argv: list[str]) -> int:
    names = argv or list(QUICK)
    unknown = [n for n in names if n not in QUICK]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(QUICK)}")
        return 2
    for name in names:
        fn, args = QUICK[name]
        started = time.perf_counter()
        print(f"\n== {name} ==", flush=True)
        fn(args)
        print(f"({name} took {time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
