import pytest


@pytest.fixture
def path(tmp_path):
    """A file name in a fresh temporary directory."""
    return str(tmp_path / "data.oxjob")


@pytest.fixture
def run_script(tmp_path):
    """Run ``source`` as a script (so as ``__main__``) in a fresh interpreter, with the
    tests' folder as its first argument; returns the completed process."""
    import os
    import subprocess
    import sys

    def run(source: str, timeout: float = 60) -> subprocess.CompletedProcess:
        script = tmp_path / "script.py"
        script.write_text(source)
        return subprocess.run(
            [sys.executable, str(script), os.path.dirname(__file__)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
