"""The caller's script in its workers, as multiprocessing's spawn does it.

A function or class defined at the top level of the script the caller runs
(``python script.py`` or ``python -m package.module``), when that script keeps its
work under ``if __name__ == "__main__":``, is pickled by reference; a worker that
meets one runs the script once as the module ``__mp_main__`` (so that block does
not run) and takes the object from it.
Every function of the script then lives in that one module in the worker, and a
global set by one call (an initializer, say) is seen by the next.

What has no file to run (an interactive session, a notebook, ``python -c``), a
script without that guard (running it again would redo its work) and what has no
top-level name (lambdas, nested functions) are pickled by value (cloudpickle).
This module also builds the environment that carries the caller's state to its
workers: the script to run, ``sys.argv``, the multiprocessing ``authkey`` and the
thread limits of native libraries.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import json
import os
import sys
import threading
import types
from typing import Any

_MAIN_NAMES = ("__main__", "__mp_main__")
#: What workers and the warm template run as (``python -m ...``): the one place that
#: names them (their own ``__main__`` is not a user's script).
WORKER_MODULE = f"{__package__}.worker"
TEMPLATE_MODULE = f"{__package__}.template"
#: (module, its script path or None), per module object: computed once.
_scripts: dict[int, tuple[Any, str | None]] = {}
_loading = threading.local()


def _script_of(module: Any) -> str | None:
    """The file a ``__main__``-like module was run from, or None (no file)."""
    if module is None:
        return None
    known = _scripts.get(id(module))
    if known is not None and known[0] is module:
        return known[1]
    path = getattr(module, "__file__", None)
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.name in (WORKER_MODULE, TEMPLATE_MODULE):
        path = None  # a worker's (or its template's) own __main__: not a user's script
    elif isinstance(path, str):
        if not os.path.isabs(path):
            from multiprocessing import process

            # typeshed omits ORIGINAL_DIR (the directory multiprocessing started in).
            original = process.ORIGINAL_DIR  # type: ignore[attr-defined]
            path = os.path.join(original or os.getcwd(), path)
        path = os.path.normpath(path) if os.path.isfile(path) else None
        if path is not None and not _has_main_guard(path):
            path = None  # running it in a worker would redo its work: by value instead
    else:
        path = None
    _scripts[id(module)] = (module, path)
    return path


def _has_main_guard(path: str) -> bool:
    """Whether the script's top level has an ``if __name__ == "__main__":`` block."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return False
    for node in tree.body:
        test = getattr(node, "test", None) if isinstance(node, ast.If) else None
        if isinstance(test, ast.Compare) and len(test.comparators) == 1:
            sides = [test.left, test.comparators[0]]
            names = [n.id for n in sides if isinstance(n, ast.Name)]
            texts = [n.value for n in sides if isinstance(n, ast.Constant)]
            if names == ["__name__"] and texts == ["__main__"]:
                return True
    return False


def main_script() -> tuple[Any, str | None]:
    """This process's script module and its path: the caller's ``__main__``, or in
    a worker the ``__mp_main__`` loaded from the caller's script."""
    main = sys.modules.get("__main__")
    path = _script_of(main)
    if path is None:
        main = sys.modules.get("__mp_main__")
        path = _script_of(main)
    return main, path


def reduce_main(obj: Any) -> tuple | None:
    """``(rebuild, args)`` pickling ``obj`` by reference to the caller's script, or
    None when ``obj`` is not a top-level function or class of a script."""
    if not (isinstance(obj, type) or type(obj) is types.FunctionType):
        return None
    if getattr(obj, "__module__", None) not in _MAIN_NAMES:
        return None
    module = sys.modules.get(obj.__module__)
    path = _script_of(module)
    if path is None:
        return None
    qualname = getattr(obj, "__qualname__", "")
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if target is not obj:
        return None  # a lambda, a nested function, a name rebound since
    return main_attribute, (path, qualname)


def main_attribute(path: str, qualname: str) -> Any:
    """The object named ``qualname`` in the script at ``path`` (unpickling side)."""
    module = None
    for name in _MAIN_NAMES:
        candidate = sys.modules.get(name)
        if _script_of(candidate) == path:
            module = candidate
            break
    if module is None:
        module = _load_script(path)
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def script_in(environ: Any) -> str | None:
    """The path of the script that workers started with ``environ`` run as
    ``__mp_main__`` (see :func:`worker_env`), or None."""
    return json.loads(environ.get("OXJOB_MAIN", "{}")).get("path")


def _load_script(path: str) -> types.ModuleType:
    """Run the caller's script as ``__mp_main__`` (its main block does not run)."""
    info = json.loads(os.environ.get("OXJOB_MAIN", "{}"))
    if info.get("argv") is not None:
        sys.argv = list(info["argv"])  # as spawn does: the script may read its arguments
    loader = importlib.machinery.SourceFileLoader("__mp_main__", path)
    spec = importlib.util.spec_from_file_location("__mp_main__", path, loader=loader)
    # It returns None only when it has to find a loader itself; one was given.
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    if info.get("path") == path and info.get("package"):
        module.__package__ = info["package"]  # ``python -m package.module``: relative imports
    sys.modules["__mp_main__"] = module
    _loading.active = True
    try:
        loader.exec_module(module)
    except BaseException as exc:
        del sys.modules["__mp_main__"]
        raise RuntimeError(
            f"The worker could not run the caller's script {path!r} as module "
            f"'__mp_main__' to load what a task needs from it: {type(exc).__name__}: {exc}. "
            "Keep the script's work under `if __name__ == '__main__':`."
        ) from exc
    finally:
        _loading.active = False
    _scripts[id(module)] = (module, path)
    return module


def _check_not_loading() -> None:
    if getattr(_loading, "active", False):
        raise RuntimeError(
            "An attempt has been made to start new worker processes while a worker is "
            "running the caller's script to load a task's function: the script starts "
            "workers at import time. Put that code under `if __name__ == '__main__':`, "
            "as multiprocessing requires."
        )


#: Thread limits for native libraries, set for the workers being started (per thread).
_settings = threading.local()

_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class inner_threads:
    """``with inner_threads(n):`` workers started meanwhile limit native thread
    pools (OpenMP, OpenBLAS, MKL...) to ``n`` threads each; None: the default."""

    def __init__(self, n: int | None) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.old = getattr(_settings, "inner_max_num_threads", None)
        _settings.inner_max_num_threads = self.n

    def __exit__(self, *exc: Any) -> None:
        _settings.inner_max_num_threads = self.old


def worker_env(n_workers: int) -> dict[str, str]:
    """Environment entries a new set of workers needs besides the engine's own:
    the script to run as ``__mp_main__`` (with ``sys.argv``), the multiprocessing
    ``authkey`` (so ``Manager`` proxies authenticate) and explicit thread limits.

    Raises
    ------
    RuntimeError
        In a worker running the caller's script: the script starts workers at
        import time (as multiprocessing refuses it, to stop a fork bomb).
    """
    _check_not_loading()
    from multiprocessing import process

    env: dict[str, str] = {}
    main, path = main_script()
    if path is not None:
        spec = getattr(main, "__spec__", None)
        package = spec.parent if spec is not None and main is sys.modules.get("__main__") else None
        argv = sys.argv if main is sys.modules.get("__main__") else None
        env["OXJOB_MAIN"] = json.dumps({"path": path, "package": package, "argv": argv})
    env["OXJOB_AUTHKEY"] = bytes(process.current_process().authkey).hex()
    # As loky: the explicit limit, else the caller's own setting, else an equal share
    # of the CPUs (part of the key deciding whether running workers can be reused).
    threads = getattr(_settings, "inner_max_num_threads", None)
    if threads is None:
        from ..backends import cpu_count

        share = str(max(cpu_count() // max(n_workers, 1), 1))
        env.update({var: os.environ.get(var, share) for var in _THREAD_VARS})
    else:
        env.update({var: str(threads) for var in _THREAD_VARS})
    if "ENABLE_IPC" not in os.environ:
        env["ENABLE_IPC"] = "1"  # TBB's schedulers coordinate across processes (as loky)
    return env


def adopt_caller_state() -> None:
    """In a worker, at start: take the caller's multiprocessing ``authkey``."""
    key = os.environ.get("OXJOB_AUTHKEY")
    if key:
        from multiprocessing import process

        process.current_process().authkey = bytes.fromhex(key)
