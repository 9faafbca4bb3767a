"""The examples in README.md and docs/ run as written: each page's python blocks, in
order, as one script in a fresh interpreter."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages without a python block (differences.md) have nothing to run.
EXAMPLES = {page: re.findall(r"```python\n(.*?)```", page.read_text(), re.S) for page in PAGES}
# The cluster libraries are extras: a page using one is skipped where it is not installed
# (the CI legs without them allow exactly that skip, see tests/conftest.py).
CLUSTER_IMPORT = re.compile(r"^\s*(?:from|import) (dask|distributed|ray)\b", re.M)


@pytest.mark.parametrize("page", [p for p in PAGES if EXAMPLES[p]], ids=lambda page: page.name)
def test_examples_run(page, tmp_path):
    blocks = EXAMPLES[page]
    for module in sorted(set(CLUSTER_IMPORT.findall("\n".join(blocks)))):
        pytest.importorskip(module)
    script = tmp_path / f"{page.stem}_examples.py"
    script.write_text("\n".join(blocks))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
