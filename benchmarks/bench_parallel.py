"""P1, P9, P10, P11: Parallel side by side with joblib, multiprocessing.Pool and threads.

Run: ``python benchmarks/bench_parallel.py [--repeat 5] [--only P11]``. Prints a markdown report
(medians, ratios in the same run) for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import joblib
from _harness import Table, interleaved_median_times, median_time

import oxjob


def square(x):
    return x * x


def window_mean(data, sl):
    return data[sl].mean()


def memmap_scenario(repeat: int) -> str:
    """P11: joblib's parallel_memmap.py gallery workload (95 window means over an 80 MB
    array) on a read-only memmap, beside the same array in memory and in oxjob.shared."""
    import numpy as np

    table = Table("P11: 95 tasks over an 80 MB array, n_jobs=2 (gallery's parallel_memmap.py)")
    data = np.random.default_rng(0).random(10_000_000)
    slices = [slice(s, s + 500_000) for s in range(0, data.size - 500_000, 100_000)]
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as d:
        path = os.path.join(d, "data")
        oxjob.dump(data, path)
        mapped = oxjob.load(path, mmap_mode="r")
        in_shared = oxjob.shared.as_shared(data)
        for lib in (joblib, oxjob):  # warm workers
            lib.Parallel(n_jobs=2)(lib.delayed(abs)(-i) for i in range(4))

        def run(lib, array):
            return lambda: lib.Parallel(n_jobs=2)(
                lib.delayed(window_mean)(array, sl) for sl in slices
            )

        times = interleaved_median_times(
            {
                "loop (memmap)": lambda: [window_mean(mapped, sl) for sl in slices],
                "joblib, memmap (mmap_mode='r')": run(joblib, mapped),
                "oxjob, memmap (mmap_mode='r')": run(oxjob, mapped),
                "joblib, in-memory array": run(joblib, data),
                "oxjob, in-memory array": run(oxjob, data),
                "oxjob, oxjob.shared array": run(oxjob, in_shared),
            },
            repeat,
        )

    baselines = {
        "oxjob, memmap (mmap_mode='r')": "joblib, memmap (mmap_mode='r')",
        "oxjob, in-memory array": "joblib, in-memory array",
        "oxjob, oxjob.shared array": "oxjob, memmap (mmap_mode='r')",
    }
    for name, seconds in times.items():
        table.add(name, seconds, baseline=baselines.get(name))
    return table.render("loop (memmap)")


def fresh_interpreter(code: str, repeat: int) -> float:
    return median_time(lambda: subprocess.run([sys.executable, "-c", code], check=True), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=["P11"], help="run this scenario alone")
    args = parser.parse_args()
    repeat = args.repeat
    print(
        f"# python {platform.python_version()}, joblib {joblib.__version__}, oxjob "
        f"{oxjob.__version__}, {os.cpu_count()} CPUs",
        flush=True,
    )
    if args.only == "P11":
        print("\n" + memmap_scenario(repeat))
        return
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
    reports.append(memmap_scenario(repeat))
    print()
    print("\n\n".join(reports))


if __name__ == "__main__":
    main()
