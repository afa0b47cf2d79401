#!/usr/bin/env bash
# Build the rewriter, instrument the local libpython3.12 into out/py312 and run a short demo on it.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(scripts/find_python.sh 3.12)
cargo build --release --workspace --quiet
./target/release/rewriter instrument "$prefix/lib/libpython3.12.so.1.0" -o out/py312 --force
./target/release/rewriter verify out/py312
out/py312/bin/python3.12 scripts/demo.py
