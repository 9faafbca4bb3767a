"""Every module of the package imports on its own, first, in a fresh interpreter (a
pickled object naming one is loaded that way, e.g. by a Dask scheduler)."""

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


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone_in_a_fresh_interpreter(module):
    done = fresh(f"import {module}")
    assert done.returncode == 0, done.stderr.decode()[-2000:]


@pytest.mark.parametrize("backend", ["threading", "sequential", "loky"])
def test_parallel_config_unpickles_in_a_fresh_interpreter(backend):
    # As joblib's, the constructor puts the settings in force: take them back at once.
    config = oxjob.parallel_config(backend=backend, n_jobs=2, verbose=3)
    config.unregister()
    code = (
        "import pickle, sys; c = pickle.loads(sys.stdin.buffer.read()); "
        "print(sorted(sys.modules).count('oxjob._config'), type(c).__name__)\n"
        "with c as settings: print(settings['n_jobs'], settings['verbose'])"
    )
    done = fresh(code, pickle.dumps(config))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == ["1", "parallel_config", "2", "3"]
