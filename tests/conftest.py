import pytest


@pytest.fixture
def path(tmp_path):
    """A file name in a fresh temporary directory."""
    return str(tmp_path / "data.oxjob")
