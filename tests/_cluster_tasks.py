"""Tasks run by the Dask and Ray tests in cluster workers (sent by value: cluster
workers need not import the tests' folder)."""

import os
import signal
import threading
import time


def pid_square(x):
    return os.getpid(), x * x


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad value {x}")
    return x


def marked_sleep(i, seconds, folder, fail=None):
    if i == fail:
        raise KeyError(f"task {i} failed")
    time.sleep(seconds)
    with open(os.path.join(folder, f"done-{i}"), "w"):
        pass
    return i


def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


def array_sum(x, i):
    return os.getpid(), float(x.sum()) + i


def make_array(n, value):
    import numpy as np

    return np.full(n, value, dtype=np.float64)


def kill_once(i, marker):
    """Kills its worker the first time any task runs (the marker tells), then works."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return i * 10
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def kill_always(i):
    os.kill(os.getpid(), signal.SIGKILL)


def nested(n_jobs, backend=None):
    from oxjob import Parallel, delayed

    inner = Parallel(n_jobs=n_jobs, backend=backend)(delayed(where)() for _ in range(4))
    return os.getpid(), inner


def where():
    time.sleep(0.01)
    return os.getpid(), threading.current_thread().name


def logged_square(x, log):
    with open(log, "a") as f:
        f.write(f"{x}\n")
    return x * x


def cached_square(location, x, log):
    from oxjob import Memory

    return Memory(location, verbose=0).cache(logged_square, ignore=["log"])(x, log)


class Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(a)
        self.lock = threading.Lock()


def raise_unpicklable():
    raise Unpicklable(1, 2)


def write_into(x, i):
    x[i] = -1.0
    return float(x.sum())


def lookup(table, key):
    return table[key]


def oxjob_parallel_inside(n):
    """An oxjob Parallel(n_jobs=2) run by a plain Dask task: its results, the warnings
    it gave, and whether it started oxjob workers in the Dask worker."""
    import warnings

    from oxjob import Parallel, delayed
    from oxjob._workers import shared_engine as _shared_engine

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(n))
    return out, [str(w.message) for w in caught], _shared_engine.running_engine() is not None


def env_var(name):
    return os.environ.get(name)


def nested_backend(require=None):
    """The backend and n_jobs of a ``Parallel()`` made inside a task, and the pids its
    calls ran in."""
    from oxjob import Parallel, delayed

    with Parallel(require=require) as parallel:
        pids = parallel(delayed(os.getpid)() for _ in range(4))
        return type(parallel._backend).__name__, parallel.n_jobs, sorted(set(pids))
