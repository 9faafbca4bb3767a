import os
import subprocess
import sys

import numpy as np

import oxjob


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "oxjob", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_demo_runs_and_reports_timings():
    result = run("demo", "--size-mb", "16")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for step in ("hash", "dump, uncompressed", "load, mmap_mode='r'", "dump, compress=3"):
        assert any(line.strip().startswith(step) for line in lines), step
    assert "GB/s" in result.stdout
    (mapped,) = [line for line in lines if "mmap_mode" in line]
    assert "O(1)" in mapped and "GB/s" not in mapped  # a map does not move the data
    # joblib is a test dependency: its times are printed beside ours.
    assert "joblib 1." in lines[0] and "joblib" in lines[2]
    # The compressed row compares each library's default codec, on the cores stated.
    assert f"on {os.cpu_count()} cores" in lines[1]
    assert "compress=3 uses oxjob's default zstd, joblib's zlib" in lines[1]
    (hashed,) = [line for line in lines if line.strip().startswith("hash")]
    assert hashed.count("GB/s") == 2 and hashed.rstrip().endswith("x")
    assert "Parallel: sum of squares" in result.stdout
    assert "; joblib " in result.stdout
    assert "[Parallel(n_jobs=2)]: Done   8 out of   8" in result.stderr  # joblib: width 3


def test_demo_needs_neither_numpy_nor_joblib(tmp_path):
    # A fresh venv has only oxjob and cloudpickle: make numpy and joblib unimportable.
    for name in ("numpy", "joblib"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('no {name} here')")
    package_root = os.path.dirname(os.path.dirname(oxjob.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), package_root]))
    result = run("demo", "--size-mb", "8", env=env)
    assert result.returncode == 0, result.stderr
    assert "a bytearray of 8 MB (install numpy for the array demo)" in result.stdout
    assert "joblib" not in result.stdout and "mmap_mode" not in result.stdout
    assert "dump, compress=3" in result.stdout and "Parallel: sum of squares" in result.stdout


def test_demo_size_must_be_positive():
    result = run("demo", "--size-mb", "0")
    assert result.returncode == 2 and "invalid size" in result.stderr


def test_inspect(tmp_path):
    path = str(tmp_path / "a.oxjob")
    oxjob.dump({"a": np.arange(100_000)}, path)
    result = run("inspect", path)
    assert result.returncode == 0
    assert "buffer 0: 800000 bytes, codec raw" in result.stdout
    (tmp_path / "bad").write_bytes(b"nope")
    result = run("inspect", str(tmp_path / "bad"))
    assert result.returncode == 1 and "bad magic" in result.stderr and not result.stdout
    assert result.stderr.startswith("python -m oxjob: error: ")


def test_cache_commands(tmp_path):
    memory = oxjob.Memory(tmp_path, verbose=0)
    square = memory.cache(np.square)
    for n in range(5):
        square(np.arange(n * 1000))
    info = run("cache", "info", str(tmp_path))
    assert info.returncode == 0 and "5 entries" in info.stdout and "numpy/square" in info.stdout
    listing = run("cache", "ls", str(tmp_path))
    assert len(listing.stdout.strip().splitlines()) == 5
    no_limit = run("cache", "prune", str(tmp_path))
    assert no_limit.returncode == 2 and "prune needs --bytes-limit" in no_limit.stderr
    pruned = run("cache", "prune", str(tmp_path), "--items-limit", "2")
    assert "removed 3 entries" in pruned.stdout
    assert len(memory.store_backend.get_items()) == 2
    assert "removed 2 entries" in run("cache", "prune", str(tmp_path), "--bytes-limit", "1K").stdout
    square(np.arange(3))
    assert "removed 1 entries" in run("cache", "clear", str(tmp_path)).stdout
    assert memory.store_backend.get_items() == []
    assert run("cache", "info", str(tmp_path / "missing")).returncode == 1
    bad_age = run("cache", "prune", str(tmp_path), "--age-limit", "soon")
    assert bad_age.returncode == 2 and "invalid age" in bad_age.stderr


def test_every_command_and_argument_has_help():
    import argparse

    from oxjob._cli.commands import _parser

    parser = _parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(commands.choices) == ["cache", "demo", "inspect"]
    assert all(choice.help for choice in commands._choices_actions)
    for name, sub in [("", parser), *commands.choices.items()]:
        for action in sub._actions:
            assert action.help, f"{name} {action.dest}"
    top = run("--help")
    assert top.returncode == 0 and "command line" in top.stdout
    assert "python -m oxjob" in top.stdout and "cache info|ls" not in top.stdout
    cache_help = run("cache", "--help")
    assert cache_help.returncode == 0 and "prune: keep at most N entries" in cache_help.stdout


def test_version_is_the_package_metadata_version():
    import importlib.metadata

    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"oxjob {importlib.metadata.version('oxjob')}"
    assert oxjob.__version__ == importlib.metadata.version("oxjob")
    assert "__version__" in dir(oxjob)


def test_errors_go_to_stderr_with_argparse_statuses(tmp_path):
    usage = run("cache", "tidy", str(tmp_path))
    assert usage.returncode == 2 and "invalid choice" in usage.stderr and not usage.stdout
    missing = run("cache", "info", str(tmp_path / "missing"))
    assert missing.returncode == 1 and not missing.stdout
    assert missing.stderr.startswith(f"python -m oxjob: error: no oxjob cache in {tmp_path}")
    nothing = run("inspect", str(tmp_path / "absent"))
    assert nothing.returncode == 1 and "No such file" in nothing.stderr and not nothing.stdout
