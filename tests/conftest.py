import os
import re

import pytest

# A CI leg must not pass by skipping what it was meant to run. With OXJOB_ALLOWED_SKIPS
# set (scripts/check.sh sets it), a skip whose reason does not match that regular
# expression fails the session; unset, skips are only reported, as pytest does.
_ALLOWED_SKIPS = os.environ.get("OXJOB_ALLOWED_SKIPS")
_SKIPPED: list[tuple[str, str]] = []


def _note_skip(report) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        _SKIPPED.append((report.nodeid, str(report.longrepr[2])))


def pytest_collectreport(report):
    _note_skip(report)


def pytest_runtest_logreport(report):
    _note_skip(report)


def pytest_sessionfinish(session, exitstatus):
    if _ALLOWED_SKIPS is None:
        return
    allowed = re.compile(_ALLOWED_SKIPS) if _ALLOWED_SKIPS else None
    unexpected = [(n, r) for n, r in _SKIPPED if allowed is None or not allowed.search(r)]
    if unexpected:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(f"OXJOB_ALLOWED_SKIPS={_ALLOWED_SKIPS!r} does not allow:", red=True)
        for nodeid, reason in unexpected:
            reporter.write_line(f"  {nodeid}: {reason}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _no_settings_leak_into_the_next_test():
    # A parallel_config made outside a ``with`` (its constructor applies it, as joblib's)
    # would change every later test's defaults: fail the test that leaked it, not a later one.
    from oxjob.backends import get_config

    before = get_config()
    yield
    leaked = get_config()
    if leaked != before:
        import oxjob.backends as b

        b._local.config = before
        pytest.fail(f"this test left parallel_config settings in force: {leaked}")


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
