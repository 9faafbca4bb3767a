"""Functions run by the tests of memmap arguments and progress hooks (importable, so
workers load them by name)."""

import os


def write_mean(data, sl, output, idx):
    """joblib's gallery pattern (parallel_memmap.py): write a result into a memmap."""
    output[idx] = data[sl].mean()


def describe(array):
    """What a worker received: its type, file, mode, and whether it may write."""
    return type(array).__name__, getattr(array, "filename", None), getattr(array, "mode", None)


def writeable(array):
    return bool(array.flags.writeable)


def fill_view(view, value):
    view[...] = value
    return os.getpid()


def recording_scorer(folder, estimator, X, y):
    """A scikit-learn scorer that notes where it ran: process id, thread, Ray worker."""
    import threading

    where = f"{os.getpid()} {threading.current_thread().name}"
    try:
        import ray

        if ray.is_initialized():
            where += f" ray:{ray.get_runtime_context().get_worker_id()}"
    except ImportError:
        pass
    with open(os.path.join(folder, f"{os.getpid()}-{threading.get_ident()}"), "a") as f:
        f.write(where + "\n")
    return estimator.score(X, y)


def nested_dask_sum(n):
    """A Dask task that itself runs a Parallel call on the cluster and waits for it."""
    from oxjob import Parallel, delayed, parallel_config

    with parallel_config(backend="dask"):
        return sum(Parallel()(delayed(abs)(-i) for i in range(n)))
