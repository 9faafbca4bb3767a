"""Type checkers see oxjob's real signatures through ``from oxjob import X`` and
``oxjob.X`` (the package's lazy ``__getattr__`` alone gives them ``Any``), and
``Memory.cache`` keeps the decorated function's signature."""

import re
import subprocess
import sys
import textwrap

USER_SCRIPT = textwrap.dedent(
    """\
import oxjob
from oxjob import Memory, Parallel, delayed, dump, hash, load

memory = Memory("{tmp}", verbose=0)


@memory.cache
def square(x: int) -> int:
    return x * x


@memory.cache(ignore=["verbose"])
def scaled(x: float, verbose: bool = False) -> float:
    return 2 * x


# Correct uses: no error expected.
total: int = square(3) + sum(Parallel(n_jobs=2)(delayed(square)(i) for i in range(3)))
half: float = scaled(1.5, verbose=True)
files: list[str] | None = dump({"a": 1}, "{tmp}.oxjob", compress=("zstd", 3))
restored = load("{tmp}.oxjob", mmap_mode="r")
digest: str = hash([1, 2]) + oxjob.hash(3)
version: str = oxjob.__version__
square.clear(warn=False)

# Each line below has one error.
Parallel(n_jobs="two")  # E
Parallel(return_as="dict")  # E
Parallel(prefer="gpu")  # E
oxjob.Parallel(require="shared")  # E
Memory(location=3)  # E
oxjob.Memory(".", mmap_mode="rw")  # E
memory.cache(ignore="x")  # E
square("a")  # E
wrong: str = square(2)  # E
square(1, 2)  # E
scaled(1.0, verbos=True)  # E
dump([1], 42)  # E
oxjob.dump([1], "f", compress=[3])  # E
load("f", mmap_mode="x")  # E
number: int = hash([1])  # E
"""
)


def test_mypy_catches_each_deliberate_error(tmp_path):
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT.replace("{tmp}", str(tmp_path / "x")))
    expected = {n for n, line in enumerate(USER_SCRIPT.splitlines(), 1) if line.endswith("# E")}
    assert len(expected) == 15
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",  # the user's errors, not the package's own
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(script),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    found = {int(n) for n in re.findall(r"^user\.py:(\d+): error:", done.stdout, re.M)}
    assert found == expected, done.stdout + done.stderr
