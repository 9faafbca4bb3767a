"""Raw (uncompressed) dump of a 268 MB float64 array: oxjob, joblib, a plain truncating
write and a write-a-temp-then-rename, interleaved, medians and every run.

    python benchmarks/bench_raw_dump.py [--runs 6] [--dir /tmp]
"""

import argparse
import os
import statistics
import tempfile
import time

import joblib
import numpy as np

import oxjob


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    data = np.random.default_rng(0).random(268_000_000 // 8)
    view = memoryview(data).cast("B")

    def temp_then_rename(path: str) -> None:
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.write(fd, view)
        os.close(fd)
        os.rename(path + ".tmp", path)

    def truncate_then_write(path: str) -> None:
        with open(path, "wb") as f:
            f.write(view)

    ways = {
        "oxjob.dump": lambda path: oxjob.dump(data, path),
        "joblib.dump": lambda path: joblib.dump(data, path),
        "temp + rename": temp_then_rename,
        "truncate + write": truncate_then_write,
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for run in range(args.runs):
            order = list(ways.items())
            for name, way in order if run % 2 == 0 else order[::-1]:
                path = os.path.join(tmp, name.replace(" ", "_"))
                start = time.perf_counter()
                way(path)
                times[name].append(time.perf_counter() - start)
    for name, runs in times.items():
        every = " ".join(f"{t * 1e3:.0f}" for t in runs)
        print(f"{name:18s} median {statistics.median(runs) * 1e3:7.1f} ms   runs: {every}")


if __name__ == "__main__":
    main()
