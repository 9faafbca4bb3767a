"""Per-miss cost of a bounded cache as it grows: 1k, 10k, 100k entries.

Run: ``python benchmarks/bench_cache_bounds.py [--sizes 1000 10000 100000]``. For each
size, a cache is filled with that many entries (through the store's ``dump_item``),
then ``Memory(location, bytes_limit='1G')`` (a bound never reached) serves
``--misses`` new calls. Before issue 21 every write walked all entries to enforce the
bound (O(entries) per miss); now a walk is due only every quarter of the entries, so
the per-miss cost should stay flat. The cost of one full walk (``reduce_size``) is
printed beside it: that is what each miss used to pay.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import oxjob


def small(x):
    return x + 1


def fill(location: str, n: int) -> None:
    store = oxjob.Memory(location, verbose=0).store_backend
    for i in range(n):
        store.dump_item(("bench/filler", f"{i:032x}"), i, {"duration": 0.0})


def measure(n: int, misses: int, root: str) -> tuple[float, float]:
    location = tempfile.mkdtemp(dir=root)
    try:
        fill(location, n)
        memory = oxjob.Memory(location, verbose=0, bytes_limit="1G")
        cached = memory.cache(small)
        cached(-1)  # the first write walks once: nothing is known of the store yet
        start = time.perf_counter()
        for i in range(misses):
            cached(i)
        per_miss = (time.perf_counter() - start) / misses
        start = time.perf_counter()
        memory.reduce_size(bytes_limit="1G")
        walk = time.perf_counter() - start
        return per_miss, walk
    finally:
        shutil.rmtree(location, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--misses", type=int, default=2000)
    parser.add_argument("--root", default=None, help="where the caches are made")
    args = parser.parse_args()
    root = args.root or tempfile.gettempdir()
    print("| entries | per miss, bytes_limit='1G' | one full walk (old per-miss cost) |")
    print("|---:|---:|---:|")
    for n in args.sizes:
        per_miss, walk = measure(n, args.misses, root)
        print(f"| {n:,} | {per_miss * 1e3:.2f} ms | {walk * 1e3:.0f} ms |", flush=True)
    print(f"\n{args.misses} misses per size; caches under {root} ({os.uname().sysname}).")


if __name__ == "__main__":
    main()
