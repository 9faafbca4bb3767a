"""P12: short-lived pools in a loop (``with Pool(2) as pool: pool.map(...)``).

Run: ``python benchmarks/bench_p12_pool_startup.py [--pools 7] [--tasks 20]``.
Each row is one fresh interpreter that imports the scenario's module (nothing heavy,
``scipy.signal``, ``sklearn.ensemble``) and then opens ``--pools`` pools of 2
processes one after the other, each mapping ``--tasks`` tiny tasks; the first pool and
the median (with min-max) of the others are reported, for ``oxjob.Pool``,
``oxjob.ProcessPoolExecutor``, ``Parallel`` (a new ``Parallel(n_jobs=2)`` call each
time: its first call starts the workers, later calls reuse them) and
``multiprocessing``'s fork, spawn and forkserver contexts in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

_CALLER = """
import json, sys, time
{imports}

def f(x):
    return x * x

def run(kind):
    if kind == "oxjob.Pool":
        import oxjob
        with oxjob.Pool(2) as pool:
            return pool.map(f, range({tasks}))
    if kind == "oxjob.ProcessPoolExecutor":
        import oxjob
        with oxjob.ProcessPoolExecutor(2) as ex:
            return list(ex.map(f, range({tasks})))
    if kind == "oxjob.Parallel":
        import oxjob
        return oxjob.Parallel(n_jobs=2)(oxjob.delayed(f)(i) for i in range({tasks}))
    import multiprocessing
    with multiprocessing.get_context(kind.split(":")[1]).Pool(2) as pool:
        return pool.map(f, range({tasks}))

if __name__ == "__main__":
    times = []
    for _ in range({pools}):
        start = time.perf_counter()
        run(sys.argv[1])
        times.append(time.perf_counter() - start)
    print(json.dumps(times))
"""

SCENARIOS = {
    "nothing heavy": "",
    "scipy.signal": "import scipy.signal",
    "sklearn.ensemble": "import sklearn.ensemble",
}
KINDS = [
    "mp:fork",
    "mp:spawn",
    "mp:forkserver",
    "oxjob.Pool",
    "oxjob.ProcessPoolExecutor",
    "oxjob.Parallel",
]


def measure(imports: str, kind: str, pools: int, tasks: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p12_caller.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(_CALLER.format(imports=imports, tasks=tasks, pools=pools)))
        out = subprocess.run(
            [sys.executable, path, kind], capture_output=True, text=True, check=True, cwd=tmp
        )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pools", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=20)
    args = parser.parse_args()
    print("| the script imports | start | first pool | median of the others (min-max) |")
    print("|---|---|---|---|")
    for scenario, imports in SCENARIOS.items():
        for kind in KINDS:
            times = [t * 1000 for t in measure(imports, kind, args.pools, args.tasks)]
            rest = times[1:]
            print(
                f"| {scenario} | {kind} | {times[0]:.0f} ms | {statistics.median(rest):.0f} ms "
                f"({min(rest):.0f}-{max(rest):.0f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
