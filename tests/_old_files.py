"""Files written by oxjob before its private modules moved into subpackages.

``tests/data/before_move/`` was written by :func:`write` on the code of that time
(``python -c "import sys; sys.path.insert(0, 'tests'); import _old_files;
_old_files.write('tests/data/before_move')"``), when the array rebuilders lived in
``oxjob._oxjob_format`` and ``Memory``'s classes in ``oxjob._memory_results`` and
``oxjob._func_inspect``: the streams inside name those paths. ``test_old_files``
loads them with the code of today. Never rewrite these files with newer code: they
stand for what users already have on disk.
"""

import os

import numpy as np


def square(x):
    """The cached function of the fixture's ``Memory`` (its code is part of the key)."""
    return x * x


def values():
    """What each file holds, as the test expects to read it back."""
    return {
        "big": np.arange(600, dtype=np.int64),  # 4800 bytes: a section of its own
        "small": np.arange(5.0),  # under 4 KiB: in the arena
    }


def write(directory):
    import oxjob
    from oxjob.memory import NotMemorizedResult

    os.makedirs(directory, exist_ok=True)
    memory = oxjob.Memory(os.path.join(directory, "cache"), verbose=0)
    cached = memory.cache(square)
    records = {"result": NotMemorizedResult([1, 2]), "code": cached.func_code_info}
    oxjob.dump({**values(), **records}, os.path.join(directory, "container.oxjob"))
    oxjob.dump(values(), os.path.join(directory, "container_protocol4.oxjob"), protocol=4)
    oxjob.dump(
        {**values(), "result": NotMemorizedResult([1, 2])},
        os.path.join(directory, "joblib_format.pkl"),
        format="joblib",
    )
    cached(values()["big"])
