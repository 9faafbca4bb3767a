"""Raw dump of a 268 MB float64 array on the disk file system (not /dev/shm): into a new
file, and over an existing one, oxjob beside joblib, the variants taking turns.

oxjob writes a temporary file and renames it over the target; ext4 flushes a file
renamed over another (``auto_da_alloc``), so replacing costs oxjob that flush, where
joblib truncates and rewrites in place. Run: ``python benchmarks/bench_dump_replace.py
[rounds] [directory]`` (default 8 rounds, a temporary directory in the home directory).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import joblib
import numpy as np

import oxjob


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    parent = sys.argv[2] if len(sys.argv) > 2 else os.path.expanduser("~")
    rng = np.random.default_rng(0)
    data = np.round(np.cumsum(rng.standard_normal(256 * (1 << 20) // 8)), 2)
    with tempfile.TemporaryDirectory(dir=parent) as tmp:
        variants = {
            "oxjob dump, new file": (oxjob.dump, os.path.join(tmp, "ox-new"), True),
            "joblib dump, new file": (joblib.dump, os.path.join(tmp, "jl-new"), True),
            "oxjob dump, over a file": (oxjob.dump, os.path.join(tmp, "ox-over"), False),
            "joblib dump, over a file": (joblib.dump, os.path.join(tmp, "jl-over"), False),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(rounds + 1):
            names = list(variants) if round_ % 2 == 0 else list(variants)[::-1]
            for name in names:
                dump, path, fresh = variants[name]
                if fresh and os.path.exists(path):
                    os.unlink(path)
                start = time.perf_counter()
                dump(data, path)
                if round_ > 0:  # round 0 warms up and creates the files to replace
                    times[name].append(time.perf_counter() - start)
        print(f"{data.nbytes / 1e6:.0f} MB in {tmp}, {rounds} rounds, order alternating")
        print("| run | median | min | max |\n|---|---:|---:|---:|")
        for name, runs in times.items():
            cells = [statistics.median(runs), min(runs), max(runs)]
            print(f"| {name} | " + " | ".join(f"{c * 1e3:.0f} ms" for c in cells) + " |")


if __name__ == "__main__":
    main()
