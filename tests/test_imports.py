"""Every module of the package imports on its own, first, in a fresh interpreter (a
pickled object naming one is loaded that way, e.g. by a Dask scheduler)."""

import importlib.util
import pathlib
import pickle
import subprocess
import sys

import pytest

import oxjob

PACKAGE = pathlib.Path(oxjob.__file__).parent
# Every module of every subpackage, found by walking the package's folders.
MODULES = sorted(
    ".".join(("oxjob", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py")
    if path.name != "__main__.py"  # runs the command line
)


def fresh(code: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], input=stdin, capture_output=True, timeout=120
    )


# The cluster backends' modules need their cluster library; without it they must say so.
NEEDS = {"oxjob._cluster.dask": "distributed", "oxjob._cluster.ray": "ray"}


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone_in_a_fresh_interpreter(module):
    done = fresh(f"import {module}")
    needed = NEEDS.get(module)
    if needed and importlib.util.find_spec(needed) is None:
        assert done.returncode == 1
        assert f"backend='{module.rsplit('.', 1)[1]}' needs" in done.stderr.decode()
        return
    assert done.returncode == 0, done.stderr.decode()[-2000:]


@pytest.mark.parametrize("backend", ["threading", "sequential", "loky"])
def test_parallel_config_unpickles_in_a_fresh_interpreter(backend):
    # As joblib's, the constructor puts the settings in force: take them back at once.
    config = oxjob.parallel_config(backend=backend, n_jobs=2, verbose=3)
    config.unregister()
    code = (
        "import pickle, sys; c = pickle.loads(sys.stdin.buffer.read()); "
        "print(sorted(sys.modules).count('oxjob._backends.config'), type(c).__name__)\n"
        "with c as settings: print(settings['n_jobs'], settings['verbose'])"
    )
    done = fresh(code, pickle.dumps(config))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == ["1", "parallel_config", "2", "3"]


def test_public_submodules_are_attributes_of_the_package_as_in_joblib():
    # code written for joblib reads ``joblib.parallel.BACKENDS`` after ``import joblib``
    done = fresh(
        "import oxjob\n"
        "print('threading' in oxjob.parallel.BACKENDS, oxjob.memory.Memory is oxjob.Memory,"
        " oxjob.pool.Pool.__name__, oxjob.persistence.load is oxjob.load)"
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == ["True", "True", "Pool", "True"]


def test_joblibs_module_level_names_are_found_in_the_same_modules():
    # ``from joblib.parallel import cpu_count`` and the like, in code ported with
    # ``import oxjob as joblib``.
    done = fresh(
        "import oxjob\n"
        "from oxjob.parallel import (cpu_count, effective_n_jobs, parallel_backend,\n"
        "    parallel_config, register_parallel_backend)\n"
        "from oxjob.numpy_pickle import dump, load\n"
        "print(parallel_config is oxjob.parallel_config, cpu_count is oxjob.cpu_count,\n"
        "    effective_n_jobs is oxjob.effective_n_jobs, load is oxjob.load,\n"
        "    oxjob.numpy_pickle.dump is oxjob.dump, parallel_backend is oxjob.parallel_backend,\n"
        "    register_parallel_backend is oxjob.register_parallel_backend)"
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == ["True"] * 7


def test_pickles_naming_the_old_paths_of_moved_modules_still_load():
    # A pickle written before the package's private modules moved into subpackages
    # names their old paths: oxjob._config.parallel_config, oxjob._cluster.Slot...
    from oxjob._io.old_paths import MODULES as MOVED

    names = [old for old, new in MOVED.items() if importlib.util.find_spec(new) is not None]
    names = [
        n for n in names if NEEDS.get(MOVED[n]) is None or importlib.util.find_spec(NEEDS[MOVED[n]])
    ]
    code = (
        "import importlib, pickle, sys\n"
        "import oxjob\n"
        "from oxjob._io.old_paths import MODULES as MOVED\n"
        "cls = pickle.loads(b'coxjob._config\\nparallel_config\\n.')\n"
        "slot = pickle.loads(b'coxjob._cluster\\nSlot\\n.')\n"
        f"old = [importlib.import_module(n) for n in {names!r}]\n"
        "print(cls is oxjob.parallel_config, slot.__module__,"
        " all(m is sys.modules[MOVED[n]] and m.__spec__.name == MOVED[n] for n, m in"
        f" zip({names!r}, old)))\n"
    )
    done = fresh(code)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == ["True", "oxjob._cluster.base", "True"]
    assert "oxjob._config" in names and "oxjob._resolve" in names
