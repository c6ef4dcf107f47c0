#!/usr/bin/env bash
# Runs the benchmarks on optimised builds of the host and the real plugins and prints the
# figures. `--quick` runs small counts (a smoke run, as CI does).
#   scripts/bench.sh            full run (10,000-cycle soak, 2,000-plugin chain)
#   scripts/bench.sh --quick    small counts
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p integration --bench lifecycle -- "$@"
