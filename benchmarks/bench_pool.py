"""Pool: oxjob.Pool side by side with multiprocessing.Pool (spawn and fork) and joblib.

Run: ``python benchmarks/bench_pool.py [--repeat 5]``. Every pool is started and warmed
up before it is timed, so the figures are the cost of ``map`` itself. Prints a markdown
report (medians, ratios in the same run) for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform

import joblib
import numpy as np
from _harness import Table, median_time

import oxjob

N_ARRAYS = 8
ARRAY_BYTES = 100 * 2**20
N_SMALL = 100_000
N_CHUNKSIZE_1 = 10_000


def total(a):
    return float(a.sum())


def square(x):
    return x * x


def _pools(processes: int) -> dict:
    return {
        "multiprocessing.Pool (spawn)": multiprocessing.get_context("spawn").Pool(processes),
        "multiprocessing.Pool (fork)": multiprocessing.get_context("fork").Pool(processes),
        "oxjob.Pool": oxjob.Pool(processes),
    }


REFERENCE = "multiprocessing.Pool (spawn)"


def bench_large_arrays(pools: dict, repeat: int) -> str:
    arrays = [np.full(ARRAY_BYTES // 8, float(i)) for i in range(N_ARRAYS)]
    expected = [total(a) for a in arrays]
    table = Table(f"map(a.sum) over {N_ARRAYS} distinct 100 MB arrays, 2 processes")
    for name, pool in pools.items():
        assert pool.map(total, arrays) == expected
        table.add(name, median_time(lambda p=pool: p.map(total, arrays), repeat), "", REFERENCE)
    parallel = joblib.Parallel(n_jobs=2)
    table.add(
        "joblib.Parallel (loky)",
        median_time(lambda: parallel(joblib.delayed(total)(a) for a in arrays), repeat),
        "memmaps arrays above 1 MB through /dev/shm",
        REFERENCE,
    )
    return table.render(REFERENCE)


def bench_small_items(pools: dict, n: int, chunksize: int | None, repeat: int) -> str:
    items = list(range(n))
    expected = [square(x) for x in items]
    label = "default chunksize" if chunksize is None else f"chunksize={chunksize}"
    table = Table(f"map(square) over {n:,} ints, {label}, 2 processes")
    for name, pool in pools.items():
        assert pool.map(square, items, chunksize) == expected
        seconds = median_time(lambda p=pool: p.map(square, items, chunksize), repeat)
        table.add(name, seconds, "", REFERENCE)
    batch_size = chunksize or "auto"
    parallel = joblib.Parallel(n_jobs=2, batch_size=batch_size)
    table.add(
        f"joblib.Parallel (loky, batch_size={batch_size})",
        median_time(lambda: parallel(joblib.delayed(square)(x) for x in items), repeat),
        "",
        REFERENCE,
    )
    return table.render(REFERENCE)


def bench_imap(pools: dict, n: int, repeat: int) -> str:
    items = list(range(n))
    expected = sum(square(x) for x in items)
    table = Table(f"sum(imap(square)) over {n:,} ints, default chunksize (1), 2 processes")
    for name, pool in pools.items():
        assert sum(pool.imap(square, items)) == expected
        seconds = median_time(lambda p=pool: sum(p.imap(square, items)), repeat)
        table.add(name, seconds, "", REFERENCE)
    return table.render(REFERENCE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"# python {platform.python_version()}, numpy {np.__version__}, joblib "
        f"{joblib.__version__}, oxjob {oxjob.__version__}, {os.cpu_count()} CPUs",
        flush=True,
    )
    pools = _pools(2)
    try:
        for pool in pools.values():
            pool.map(square, range(100))  # workers started and warm
        reports = [
            bench_large_arrays(pools, args.repeat),
            bench_small_items(pools, N_SMALL, None, args.repeat),
            bench_small_items(pools, N_CHUNKSIZE_1, 1, args.repeat),
            bench_imap(pools, N_CHUNKSIZE_1, args.repeat),
        ]
    finally:
        for pool in pools.values():
            pool.terminate()
    print()
    print("\n\n".join(reports))


if __name__ == "__main__":
    main()
