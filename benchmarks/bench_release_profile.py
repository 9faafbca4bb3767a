"""A/B of two builds of the engine (e.g. two release profiles), alternated in one run.

Usage: ``python benchmarks/bench_release_profile.py DIR_A DIR_B``, each DIR a folder
holding an ``oxjob`` package with its own ``_engine`` build (``python/`` of a checkout
with the built ``.so`` copied in). Each build runs in a fresh interpreter, A then B,
``--rounds`` times; printed: the median over rounds of each step's best time.
"""

import argparse
import json
import statistics
import subprocess
import sys

STEPS = r"""
import json, os, tempfile, time
import numpy as np
import oxjob

data = np.round(np.cumsum(np.random.default_rng(0).standard_normal(16 << 20)), 2)  # 128 MB
tmp = tempfile.mkdtemp()


def best(func, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


print(json.dumps({
    "hash": best(lambda: oxjob.hash(data), 5),
    "dump": best(lambda: oxjob.dump(data, os.path.join(tmp, "a")), 5),
    "dump compress=3": best(lambda: oxjob.dump(data, os.path.join(tmp, "b"), compress=3), 3),
    "load": best(lambda: oxjob.load(os.path.join(tmp, "a")), 5),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("builds", nargs=2, help="two folders, each with an oxjob package")
    parser.add_argument("--rounds", type=int, default=4, help="A/B rounds (default 4)")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {build: [] for build in args.builds}
    for _ in range(args.rounds):
        for build in args.builds:
            done = subprocess.run(
                [sys.executable, "-c", STEPS],
                env={"PYTHONPATH": build},
                capture_output=True,
                text=True,
                check=True,
            )
            runs[build].append(json.loads(done.stdout))
    for build, results in runs.items():
        medians = {k: statistics.median(r[k] for r in results) * 1e3 for k in results[0]}
        print(build, "  ".join(f"{k} {v:.1f} ms" for k, v in medians.items()))


if __name__ == "__main__":
    main()
