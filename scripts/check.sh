#!/usr/bin/env bash
# Install everything the project needs, then run every check: the test command of the README.
# Run it inside a venv of a supported Python (>= 3.11). OXJOB_TEST_GROUP=test-local leaves the
# cluster libraries (dask, ray) out; OXJOB_ALLOWED_SKIPS is the regular expression of the skip
# reasons this run accepts (tests/conftest.py): any other skip fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
group="${OXJOB_TEST_GROUP:-test}"
export OXJOB_ALLOWED_SKIPS="${OXJOB_ALLOWED_SKIPS-root ignores directory permissions}"

echo "== install (build the engine, dependency group '$group')"
# --group (PEP 735) needs pip >= 25.1: upgrade first.
python -m pip install --quiet --upgrade "pip>=25.1"
python -m pip install --quiet -e . --group "$group"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test (with a bounded fuzz run of the parsers)"
OXJOB_FUZZ_SECONDS="${OXJOB_FUZZ_SECONDS:-10}" cargo test --release --workspace
echo "== ruff"
ruff check python tests benchmarks
ruff format --check python tests benchmarks
echo "== mypy (the package; pyproject.toml lists the modules still owing types) and stubtest"
python -m mypy
python -m mypy.stubtest oxjob._engine --allowlist stubtest-allowlist.txt
echo "== pytest"
python -m pytest -q
