#!/usr/bin/env bash
# The project's test command: lint, unit + end-to-end tests, then the CPython regression gate
# (vanilla vs instrumented libpython3.12 on the default list of test modules).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(scripts/find_python.sh 3.12)

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
# Build first: the end-to-end tests run the rewriter binary and the runtime cdylib,
# which `cargo test` alone does not produce.
cargo build --workspace --quiet
cargo test --workspace 2>&1 | tee target/cargo-test.log
echo "== regression gate (CPython's own tests, vanilla vs instrumented)"
cargo build --release --workspace --quiet
./target/release/rewriter instrument "$prefix/lib/libpython3.12.so.1.0" -o target/gate/py312 --force --quiet
python3 scripts/regrtest_compare.py \
    --vanilla "$prefix/bin/python3.12" \
    --instrumented target/gate/py312/bin/python3.12 \
    -j 2 --json target/gate/regrtest.json
# One closing line for CI: the cargo test totals.
awk '/^test result:/ { split($0, a, " "); p += a[4]; f += a[6] } END { printf "%d passed, %d failed\n", p, f }' target/cargo-test.log
