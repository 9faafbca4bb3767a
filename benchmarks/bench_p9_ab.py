"""P9 as an A/B: a fresh interpreter's ``import oxjob`` and first ``Parallel(n_jobs=2)``
of 10 tasks, under two interpreters (two checkouts' venvs), alternating.

Run: ``python benchmarks/bench_p9_ab.py OLD_PYTHON NEW_PYTHON [--runs 15]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

CODE = "from oxjob import Parallel as P, delayed as d; P(n_jobs=2)(d(abs)(-i) for i in range(10))"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    pythons = {"old": args.old, "new": args.new}
    times: dict[str, list[float]] = {name: [] for name in pythons}
    for run in range(args.runs):
        order = list(pythons) if run % 2 == 0 else list(pythons)[::-1]
        for name in order:
            start = time.perf_counter()
            subprocess.run([pythons[name], "-c", CODE], check=True)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(
            f"{name}: median {statistics.median(values) * 1000:.1f} ms "
            f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"
        )


if __name__ == "__main__":
    main()
