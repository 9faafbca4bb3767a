"""P1, P9, P10: Parallel side by side with joblib, multiprocessing.Pool and threads.

Run: ``python benchmarks/bench_parallel.py [--repeat 5]``. Prints a markdown report
(medians, ratios in the same run) for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import joblib
from _harness import Table, interleaved_median_times, median_time

import oxjob


def square(x):
    return x * x


def fresh_interpreter(code: str, repeat: int) -> float:
    return median_time(lambda: subprocess.run([sys.executable, "-c", code], check=True), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    repeat = args.repeat
    print(
        f"# python {platform.python_version()}, joblib {joblib.__version__}, oxjob "
        f"{oxjob.__version__}, {os.cpu_count()} CPUs",
        flush=True,
    )
    reports = []

    p1 = Table("P1: 100k tiny tasks (x*x), n_jobs=2, warm workers (variants take turns)")
    n = 100_000
    pool = multiprocessing.get_context("spawn").Pool(2)
    pool.map(square, range(10))
    oxjob.Parallel(n_jobs=2)(oxjob.delayed(square)(i) for i in range(10))
    joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(10))
    prebuilt = [oxjob.delayed(square)(i) for i in range(n)]
    ox_pool = oxjob.Pool(2)
    ox_pool.map(square, range(10))
    p1_times = interleaved_median_times(
        {
            "multiprocessing.Pool.map (spawn)": lambda: pool.map(square, range(n)),
            "loop": lambda: [square(i) for i in range(n)],
            "building the delayed tasks only": lambda: [oxjob.delayed(square)(i) for i in range(n)],
            "joblib.Parallel (loky)": lambda: joblib.Parallel(n_jobs=2)(
                joblib.delayed(square)(i) for i in range(n)
            ),
            "oxjob.Parallel": lambda: oxjob.Parallel(n_jobs=2)(
                oxjob.delayed(square)(i) for i in range(n)
            ),
            "oxjob.Parallel over tasks built beforehand": lambda: oxjob.Parallel(n_jobs=2)(
                prebuilt
            ),
            "oxjob.Pool.map": lambda: ox_pool.map(square, range(n)),
        },
        repeat,
    )
    ox_pool.terminate()
    notes = {
        "building the delayed tasks only": "part of every Parallel call below",
        "oxjob.Parallel over tasks built beforehand": "the engine's share of a call",
        "oxjob.Pool.map": "same engine, no per-task tuples to build",
    }
    for name, seconds in p1_times.items():
        p1.add(name, seconds, notes.get(name, ""))
    pool.terminate()
    reports.append(p1.render("multiprocessing.Pool.map (spawn)", speedup=False))

    p9 = Table("P9: fresh interpreter: import + first Parallel(n_jobs=2) of 10 tasks")
    p9.add("python -c pass", fresh_interpreter("pass", repeat))
    call = "P(n_jobs=2)(d(abs)(-i) for i in range(10))"
    p9.add(
        "joblib",
        fresh_interpreter(f"from joblib import Parallel as P, delayed as d; {call}", repeat),
    )
    p9.add(
        "oxjob",
        fresh_interpreter(f"from oxjob import Parallel as P, delayed as d; {call}", repeat),
        baseline="joblib",
    )
    reports.append(p9.render("joblib"))

    p10 = Table("P10: threads, 10k tiny tasks, n_jobs=2")
    m = 10_000
    executor = ThreadPoolExecutor(2)
    p10.add(
        "ThreadPoolExecutor.map",
        median_time(lambda: list(executor.map(square, range(m))), repeat),
    )
    p10.add(
        "joblib threading",
        median_time(
            lambda: joblib.Parallel(n_jobs=2, backend="threading")(
                joblib.delayed(square)(i) for i in range(m)
            ),
            repeat,
        ),
    )
    p10.add(
        "oxjob threading",
        median_time(
            lambda: oxjob.Parallel(n_jobs=2, backend="threading")(
                oxjob.delayed(square)(i) for i in range(m)
            ),
            repeat,
        ),
        baseline="joblib threading",
    )
    executor.shutdown()
    reports.append(p10.render("ThreadPoolExecutor.map"))
    print()
    print("\n\n".join(reports))


if __name__ == "__main__":
    main()
