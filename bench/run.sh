#!/usr/bin/env bash
# Runs every benchmark and writes the table into BENCHMARKS.md:
#   bench/run.sh
# criterion's in-process benchmarks (benches/figures.rs, reports in
# target/criterion), the figures measured taking turns and the whole-process
# ones with src/bin/whole.rs, the table with src/bin/report.rs. Takes about
# 8 minutes on 2 cores. Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v curl >/dev/null || apt-get install -y curl
command -v node >/dev/null || { echo "node is needed for tests/oidc" >&2; exit 2; }
[ -d tests/oidc/node_modules ] || (cd tests/oidc && npm ci --no-audit --no-fund)

echo "== release build"
cargo build --release -p posthandler-host -p posthandler-oauth2 -p posthandler-test-noop
# A second version of the OAuth plugin for the swaps, in a target folder of
# its own so that it never replaces the first.
POSTHANDLER_PLUGIN_VERSION=0.2.0 cargo build --release -p posthandler-oauth2 \
  --target-dir target/bench-versions
second=target/bench-versions/release/libposthandler_oauth2.so

echo "== in-process figures (criterion)"
cargo bench -p posthandler-bench --bench figures

echo "== whole-process figures"
cargo run --release -q -p posthandler-bench --bin whole -- "$second"

echo "== BENCHMARKS.md"
cargo run --release -q -p posthandler-bench --bin report
