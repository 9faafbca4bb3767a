"""P7, P8 and a 100 MB result: ``Memory.cache`` side by side with joblib.Memory.

Run: ``python benchmarks/bench_memory.py [--repeat 5]``. Prints a markdown report
(medians, speed-ups measured in the same run) for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time

import joblib
import numpy as np
from _harness import Table, median_time

import oxjob


def per_call(func, arg, calls: int, repeat: int) -> float:
    """Median over ``repeat`` runs of the mean time of one of ``calls`` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            func(arg)
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def small(x):
    return x + 1


def total(a):
    return float(a.sum())


def big_result(seed):
    return np.full(100 * 2**20 // 8, seed, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="cache directory parent (default: /dev/shm, so disk writeback does not blur runs)",
    )
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(dir=args.dir)
    print(
        f"# python {platform.python_version()}, numpy {np.__version__}, joblib "
        f"{joblib.__version__}, oxjob {oxjob.__version__}, {os.cpu_count()} CPUs, cache in {tmp}",
        flush=True,
    )
    try:
        jm = joblib.Memory(os.path.join(tmp, "joblib"), verbose=0)
        om = oxjob.Memory(os.path.join(tmp, "oxjob"), verbose=0)
        reports = []

        p7 = Table("P7: Memory.cache hit, small argument (time per call)")
        jf, of = jm.cache(small), om.cache(small)
        jf(1), of(1)
        p7.add("joblib.Memory hit", per_call(jf, 1, 2000, args.repeat))
        p7.add("oxjob.Memory hit", per_call(of, 1, 20000, args.repeat))
        reports.append(p7.render("joblib.Memory hit"))

        p8 = Table("P8: Memory.cache hit, 100 MB array argument (time per call)")
        array = np.random.default_rng(0).standard_normal(100 * 2**20 // 8)
        jf, of = jm.cache(total), om.cache(total)
        jf(array), of(array)
        p8.add("joblib.Memory hit", per_call(jf, array, 3, args.repeat))
        p8.add("oxjob.Memory hit", per_call(of, array, 20, args.repeat))
        reports.append(p8.render("joblib.Memory hit"))

        store = Table("Store then load a 100 MB result")
        jf, of = jm.cache(big_result), om.cache(big_result)
        seeds = iter(range(1000))
        store.add(
            "joblib store (miss: compute + write)",
            median_time(lambda: jf(next(seeds)), args.repeat),
            baseline="joblib store (miss: compute + write)",
        )
        store.add(
            "oxjob store (miss: compute + write)",
            median_time(lambda: of(next(seeds)), args.repeat),
            baseline="joblib store (miss: compute + write)",
        )
        jf(0), of(0)
        store.add("joblib load (hit)", median_time(lambda: jf(0), args.repeat))
        store.add(
            "oxjob load (hit)",
            median_time(lambda: of(0), args.repeat),
            baseline="joblib load (hit)",
        )
        reports.append(store.render("joblib load (hit)"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("\n\n".join(reports))


if __name__ == "__main__":
    main()
