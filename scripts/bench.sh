#!/usr/bin/env bash
# Runs the benchmarks on optimised builds of the host and the real plugins and prints the
# figures: lifecycle (load/unload, execute, dependency call, 2,000-plugin chain, soak) and the
# event bus (1 emitter, 10 subscribers).
#   scripts/bench.sh            full counts
#   scripts/bench.sh --quick    small counts (the CI smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p integration --bench lifecycle -- "$@"
cargo bench -p integration --bench bus -- "$@"
