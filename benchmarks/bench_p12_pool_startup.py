"""P12: short-lived pools in a loop (``with Pool(2) as pool: pool.map(...)``).

Run: ``python benchmarks/bench_p12_pool_startup.py [--pools 7] [--tasks 20] [--work-ms 0]
[--runs 1] [--python LABEL=PATH ...]``.
Each row is one fresh interpreter that imports the scenario's module (nothing heavy,
``scipy.signal``, ``sklearn.ensemble``) and then opens ``--pools`` pools of 2
processes one after the other, each mapping ``--tasks`` tiny tasks; the first pool and
the median (with min-max) of the others are reported, for ``oxjob.Pool``,
``oxjob.ProcessPoolExecutor``, ``Parallel`` (a new ``Parallel(n_jobs=2)`` call each
time: its first call starts the workers, later calls reuse them) and
``multiprocessing``'s fork, spawn and forkserver contexts, and the standard library's
``ProcessPoolExecutor`` with the fork context (``cf:fork``), in the same run.

``--work-ms`` makes each task busy for that long (a loop of pools doing some work, where
workers forked ahead for the next pool are ready when it opens). ``--runs`` repeats every
row, alternating the order of the rows, and reports the median of the runs' medians with
their spread and the ratio to ``mp:fork`` of the same runs. ``--python`` (repeatable) runs
oxjob's rows under other interpreters too, e.g. an older checkout's venv for an A/B.
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
    end = time.perf_counter() + {work_s}
    while time.perf_counter() < end:
        pass
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
    if kind.startswith("cf:"):
        from concurrent.futures import ProcessPoolExecutor
        context = multiprocessing.get_context(kind.split(":")[1])
        with ProcessPoolExecutor(2, mp_context=context) as ex:
            return list(ex.map(f, range({tasks})))
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
    "cf:fork",
    "mp:spawn",
    "mp:forkserver",
    "oxjob.Pool",
    "oxjob.ProcessPoolExecutor",
    "oxjob.Parallel",
]


def measure(
    python: str, imports: str, kind: str, pools: int, tasks: int, work_s: float
) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p12_caller.py")
        script = _CALLER.format(imports=imports, tasks=tasks, pools=pools, work_s=work_s)
        with open(path, "w") as f:
            f.write(textwrap.dedent(script))
        out = subprocess.run(
            [python, path, kind], capture_output=True, text=True, check=True, cwd=tmp
        )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pools", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--work-ms", type=float, default=0.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--python", action="append", default=[], metavar="LABEL=PATH")
    args = parser.parse_args()
    pythons = [("", sys.executable)] + [tuple(p.split("=", 1)) for p in args.python]
    rows = [(kind, "", sys.executable) for kind in KINDS if "oxjob" not in kind]
    rows += [(kind, label, py) for label, py in pythons for kind in KINDS if "oxjob" in kind]
    print(f"work per task: {args.work_ms} ms; {args.runs} run(s); first pool and median of")
    print("the others per run, then the median over runs (min-max of the runs' medians)")
    print()
    print("| the script imports | start | first pool | later pools | vs mp:fork |")
    print("|---|---|---|---|---|")
    for scenario, imports in SCENARIOS.items():
        first: dict = {row: [] for row in rows}
        later: dict = {row: [] for row in rows}
        for run in range(args.runs):
            order = rows if run % 2 == 0 else rows[::-1]
            for row in order:
                kind, _, python = row
                times = [
                    t * 1000
                    for t in measure(
                        python, imports, kind, args.pools, args.tasks, args.work_ms / 1000
                    )
                ]
                first[row].append(times[0])
                later[row].append(statistics.median(times[1:]))
        fork = statistics.median(later[rows[0]])
        for row in rows:
            kind, label, _ = row
            name = f"{kind} ({label})" if label else kind
            med = statistics.median(later[row])
            print(
                f"| {scenario} | {name} | {statistics.median(first[row]):.0f} ms | "
                f"{med:.1f} ms ({min(later[row]):.1f}-{max(later[row]):.1f}) | "
                f"{med / fork:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
