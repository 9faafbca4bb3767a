"""The cluster room: ``Parallel(backend="dask")`` and ``Parallel(backend="ray")``.

``base`` holds what both backends share (batches run in cluster workers, outcomes,
timeouts), ``shared_args`` the large arguments sent to the cluster once, ``dask``
and ``ray`` the two backends, imported only when their name is first used
(:mod:`oxjob.backends` registers them lazily). See docs/distributed.md.
"""


def __getattr__(name: str) -> object:
    # ``oxjob._cluster`` was a module (now ``base``): a pickle naming one of its
    # functions or classes (``oxjob._cluster.Slot``, ``run_batch``) still finds it.
    # (importlib, not ``from . import base``: that asks this function for ``base``.)
    import importlib

    if not name.startswith("__") and name not in ("base", "dask", "ray", "shared_args"):
        base = importlib.import_module(f"{__name__}.base")
        if hasattr(base, name):
            return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
