"""S1: scikit-learn through joblib, on loky and on oxjob's joblib backend, side by side.

Run: ``python benchmarks/bench_sklearn.py [--repeat 3] [--only cold,input,results,small]
[--scale 0.5]``. Every measurement runs in a fresh interpreter (``--child``), loky and
oxjob taking turns in each round, so that a noisy phase of the machine weighs on both
and each run's peak RSS (caller, and the largest worker) is its own. Warm scenarios
start the workers and import scikit-learn in them before the timed run, then time the
call twice: the first call (fresh memory everywhere) and the same call again.

Scenarios (issue 14, item 4):

- ``cold``: a fresh interpreter running one ``GridSearchCV(SVC(), 4 candidates, cv=5,
  n_jobs=2)`` on ``load_digits`` (the whole interpreter is timed, and the fit alone);
- ``input``: ``cross_val_score(RidgeClassifier(), X, y, cv=8, n_jobs=2)`` over a large
  float64 X (400 MB at ``--scale 1``), against ``n_jobs=1`` too; peak memory;
- ``results``: ``ColumnTransformer(n_jobs=2).fit_transform`` of a 1M x 40 array (at
  ``--scale 1``), four ``StandardScaler`` blocks of 10 columns;
- ``small``: ``GridSearchCV(LogisticRegression(), 60 values of C, cv=5, n_jobs=2)`` on
  iris.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from _harness import descendants, peak_rss_mb

SCENARIOS = ("cold", "input", "results", "small")


# ---- the child: one measurement in a fresh interpreter ---------------------------------


def _data(scenario: str, scale: float):
    import numpy as np

    rng = np.random.default_rng(0)
    if scenario == "input":
        n = int(500_000 * scale)  # x 100 float64 columns: 400 MB at scale 1
        X = rng.normal(size=(n, 100))
        y = (X[:, 0] + 0.1 * rng.normal(size=n) > 0).astype(int)
        return X, y
    if scenario == "results":
        return rng.normal(size=(int(1_000_000 * scale), 40)), None
    from sklearn.datasets import load_digits, load_iris

    return (load_digits if scenario == "cold" else load_iris)(return_X_y=True)


def _run(scenario: str, X, y, n_jobs: int = 2):
    if scenario == "cold":
        from sklearn.model_selection import GridSearchCV
        from sklearn.svm import SVC

        return GridSearchCV(SVC(), {"C": [0.1, 1, 10, 100]}, cv=5, n_jobs=n_jobs).fit(X, y)
    if scenario == "input":
        from sklearn.linear_model import RidgeClassifier
        from sklearn.model_selection import cross_val_score

        return cross_val_score(RidgeClassifier(), X, y, cv=8, n_jobs=n_jobs)
    if scenario == "results":
        from sklearn.compose import ColumnTransformer
        from sklearn.preprocessing import StandardScaler

        blocks = [(f"b{i}", StandardScaler(), list(range(10 * i, 10 * i + 10))) for i in range(4)]
        return ColumnTransformer(blocks, n_jobs=n_jobs).fit_transform(X)
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    grid = {"C": np.logspace(-3, 3, 60)}
    return GridSearchCV(LogisticRegression(max_iter=1000), grid, cv=5, n_jobs=n_jobs).fit(X, y)


def _warm_up(backend: str) -> None:
    """Start the workers and import scikit-learn in them (untimed)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X, y = load_iris(return_X_y=True)
    cross_val_score(LogisticRegression(max_iter=200), X, y, cv=4, n_jobs=2)


def child(scenario: str, backend: str, scale: float) -> None:
    start = time.perf_counter()
    if backend == "oxjob":
        import oxjob  # noqa: F401 - registers the "oxjob" backend with joblib
    import joblib

    n_jobs = 1 if backend == "n_jobs=1" else 2
    name = "loky" if backend == "n_jobs=1" else backend
    with joblib.parallel_config(backend=name):
        X, y = _data(scenario, scale)
        if scenario != "cold" and n_jobs == 2:
            _warm_up(backend)
        fit_start = time.perf_counter()
        _run(scenario, X, y, n_jobs)
        end = time.perf_counter()
        workers = [peak_rss_mb(pid) for pid in descendants(os.getpid())]
        caller = peak_rss_mb(os.getpid())
        again = None
        if scenario != "cold":  # the same call once more: segments and pages reused
            again_start = time.perf_counter()
            _run(scenario, X, y, n_jobs)
            again = time.perf_counter() - again_start
    print(
        json.dumps(
            {
                "seconds": end - fit_start,
                "again": again,
                "interpreter": end - start,
                "caller_mb": caller,
                "worker_mb": max(workers, default=0.0),
            }
        )
    )


# ---- the parent: rounds of fresh interpreters, table of medians ------------------------


def measure(scenario: str, backend: str, scale: float) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", scenario, backend, "--scale", str(scale)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(runs: dict, backend: str, key: str) -> float:
    values = [r[key] for r in runs[backend] if r[key] is not None]
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--scale", type=float, default=1.0, help="size of input/results data")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.scale)
        return
    import joblib
    import numpy as np
    import sklearn

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, joblib "
        f"{joblib.__version__}, scikit-learn {sklearn.__version__}, {os.cpu_count()} CPUs, "
        f"scale {args.scale}, {args.repeat} rounds"
    )
    for scenario in args.only.split(","):
        backends = ["loky", "oxjob"] + (["n_jobs=1"] if scenario == "input" else [])
        runs: dict[str, list[dict]] = {b: [] for b in backends}
        for _ in range(args.repeat):
            for backend in backends:
                runs[backend].append(measure(scenario, backend, args.scale))
        print(f"\n### {scenario}\n")
        print(
            "| run | first call | loky / run | call again | loky / run | whole interpreter "
            "| caller peak | worker peak |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for backend in runs:
            first, again = _median(runs, backend, "seconds"), _median(runs, backend, "again")
            loky_first = _median(runs, "loky", "seconds")
            loky_again = _median(runs, "loky", "again")
            print(
                f"| {backend} | {first * 1e3:.0f} ms | {loky_first / first:.2f}× "
                f"| {again * 1e3:.0f} ms | {loky_again / again:.2f}× "
                f"| {_median(runs, backend, 'interpreter') * 1e3:.0f} ms "
                f"| {_median(runs, backend, 'caller_mb'):.0f} MB "
                f"| {_median(runs, backend, 'worker_mb'):.0f} MB |"
            )
        if scenario == "input":
            ideal = _median(runs, "n_jobs=1", "seconds") / 2
            mine = _median(runs, "oxjob", "seconds")
            print(f"\noxjob / (n_jobs=1 time / 2 workers): {mine / ideal:.2f}×")


if __name__ == "__main__":
    main()
