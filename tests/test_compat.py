"""joblib's small helpers (``PrintTime``, ``Logger``) and Pythons without multiprocessing."""

import os
import re
import subprocess
import sys

import oxjob


def test_print_time_writes_to_stderr_and_rotates_logs(tmp_path, capsys):
    logfile = tmp_path / "logs" / "run.log"
    for _ in range(3):
        oxjob.PrintTime(logfile=str(logfile))("Foo")
    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(r"(Foo: 0\.\ds, 0\.0min\n){3}", err), err
    assert (tmp_path / "logs" / "run.log.1").exists()
    assert (tmp_path / "logs" / "run.log.2").exists()
    assert logfile.read_text().rstrip().endswith("min")
    timer = oxjob.PrintTime(logdir=str(tmp_path / "dir"))
    timer("Total", total=True)
    assert (tmp_path / "dir" / "joblib.log").exists()
    assert re.fullmatch(r"Total: 0\.\d\ds, 0\.0 min\n", capsys.readouterr().err)


NO_MULTIPROCESSING = """
import math, oxjob
assert oxjob.hash([1, 2]) and oxjob.Memory(None).cache(abs)(-2) == 2
oxjob.dump({"a": 1}, "obj.oxjob")
assert oxjob.load("obj.oxjob") == {"a": 1}
assert oxjob.Memory("cache", verbose=0).cache(math.sqrt)(4.0) == 2.0
assert oxjob.Parallel(n_jobs=1)(oxjob.delayed(math.sqrt)(i**2) for i in range(5)) == [0, 1, 2, 3, 4]
from oxjob.exceptions import TerminatedWorkerError
print("ok")
"""


def test_import_without_multiprocessing(tmp_path):
    # Pyodide and other single-threaded builds have no _multiprocessing (joblib's test).
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    (blocker / "_multiprocessing.py").write_text('raise ImportError("No _multiprocessing")')
    package_root = os.path.dirname(os.path.dirname(oxjob.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), package_root]))
    done = subprocess.run(
        [sys.executable, "-c", NO_MULTIPROCESSING],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
