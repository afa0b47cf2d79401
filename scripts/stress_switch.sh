#!/usr/bin/env bash
# Long form of the switch-callback stress test: build, instrument the local
# libpython3.12 into target/stress/py312 and run tests/python/stress_switch.py
# (16 threads switching under a root-space switch callback; see its doc).
# Usage: scripts/stress_switch.sh [SECONDS (default 10)] [THREADS (default 16)]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
threads="${2:-16}"
prefix=$(scripts/find_python.sh 3.12)
cargo build --release --workspace --quiet
./target/release/rewriter instrument "$prefix/lib/libpython3.12.so.1.0" -o target/stress/py312 --force --quiet
exec target/stress/py312/bin/python3.12 tests/python/stress_switch.py "$seconds" "$threads"
