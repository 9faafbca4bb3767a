#!/usr/bin/env bash
# Install everything the project needs, then run every check: the test command of the README.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== install (build the engine, test dependencies)"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[test]"
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
echo "== pytest"
python -m pytest -q
