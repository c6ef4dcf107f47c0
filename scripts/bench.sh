#!/usr/bin/env bash
# Runs the benchmarks on optimised builds of the host and the real plugins and prints the
# figures: lifecycle (load/unload, execute, dependency call, 2,000-plugin chain, soak), the
# event bus (1 emitter, 10 subscribers), reload under load through the watched folder, and the
# tables, topics and buckets repositories against their raw drivers.
#   scripts/bench.sh            full counts
#   scripts/bench.sh --quick    small counts (the CI smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p integration --bench lifecycle -- "$@"
cargo bench -p integration --bench bus -- "$@"
cargo bench -p integration --bench watch -- "$@"
cargo bench -p integration --bench tables -- "$@"
cargo bench -p integration --bench topics -- "$@"
cargo bench -p integration --bench buckets -- "$@"
