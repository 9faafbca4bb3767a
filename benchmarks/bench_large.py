"""P2, P3: large arrays in and out, side by side with joblib and multiprocessing.Pool.

Run: ``python benchmarks/bench_large.py [--repeat 3]``. Every variant runs in a fresh
interpreter so that its peak RSS (caller, and the largest worker) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from _harness import descendants, peak_rss_mb

N_ARRAYS = 8
ARRAY_BYTES = 100 * 2**20
N_ITEMS = ARRAY_BYTES // 8


def total(a):
    return float(a.sum())


def make(i):
    return np.full(N_ITEMS, float(i))


def run_variant(name: str, repeat: int) -> dict:
    scenario, runner = name.split(":")
    if scenario == "P2":
        if runner == "oxjob-shared":
            from oxjob import shared

            inputs = [shared.full(N_ITEMS, float(i)) for i in range(N_ARRAYS)]
        else:
            inputs = [np.full(N_ITEMS, float(i)) for i in range(N_ARRAYS)]
        func, args = total, inputs
    else:
        func, args = make, list(range(N_ARRAYS))

    if runner == "loop":
        call = lambda: [func(a) for a in args]  # noqa: E731
    elif runner == "oxjob-pool":
        import oxjob

        pool = oxjob.Pool(2)
        call = lambda: pool.map(func, args)  # noqa: E731
    elif runner.startswith("oxjob"):
        from oxjob import Parallel, delayed

        call = lambda: Parallel(n_jobs=2)(delayed(func)(a) for a in args)  # noqa: E731
    elif runner == "joblib":
        from joblib import Parallel, delayed

        call = lambda: Parallel(n_jobs=2)(delayed(func)(a) for a in args)  # noqa: E731
    elif runner == "pool":
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(2)
        call = lambda: pool.map(func, args)  # noqa: E731
    else:
        raise ValueError(runner)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - start)
        del out
    workers = descendants(os.getpid())
    worker_peak = max((peak_rss_mb(p) for p in workers), default=0.0)
    return {
        "median": statistics.median(times),
        "times": times,
        "caller_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": worker_peak,
    }


VARIANTS = {
    "P2": ["loop", "joblib", "pool", "oxjob-pool", "oxjob", "oxjob-shared"],
    "P3": ["loop", "joblib", "pool", "oxjob-pool", "oxjob"],
}
TITLES = {
    "P2": f"P2: {N_ARRAYS} distinct 100 MB arrays in, a.sum() each, n_jobs=2",
    "P3": f"P3: {N_ARRAYS} tasks each returning a 100 MB array, n_jobs=2",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.repeat)))
        return
    import joblib

    import oxjob

    print(
        f"# python {platform.python_version()}, numpy {np.__version__}, joblib "
        f"{joblib.__version__}, oxjob {oxjob.__version__}, {os.cpu_count()} CPUs; data per "
        f"scenario {N_ARRAYS * ARRAY_BYTES / 2**20:.0f} MB",
        flush=True,
    )
    reports = []
    for scenario, runners in VARIANTS.items():
        rows = {}
        for runner in runners:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--variant",
                    f"{scenario}:{runner}",
                    "--repeat",
                    str(args.repeat),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            rows[runner] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"    {scenario} {runner}: {rows[runner]}", flush=True)
        data_mb = N_ARRAYS * ARRAY_BYTES / 2**20
        lines = [
            f"### {TITLES[scenario]}",
            "",
            "| run | median | vs loop | speed-up vs joblib | first call | slowest–fastest "
            "call | caller peak RSS | largest worker peak RSS |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for runner, row in rows.items():
            lines.append(
                f"| {runner} | {row['median'] * 1e3:.0f} ms | "
                f"{row['median'] / rows['loop']['median']:.2f}× | "
                f"{rows['joblib']['median'] / row['median']:.2f}× | "
                f"{row['times'][0] * 1e3:.0f} ms | "
                f"{max(row['times']) * 1e3:.0f}–{min(row['times']) * 1e3:.0f} ms | "
                f"{row['caller_peak_mb']:.0f} MB ({row['caller_peak_mb'] / data_mb:.2f}× data) | "
                f"{row['worker_peak_mb']:.0f} MB |"
            )
        reports.append("\n".join(lines))
    print()
    print("\n\n".join(reports))


if __name__ == "__main__":
    main()
