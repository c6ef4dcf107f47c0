#!/usr/bin/env bash
# Runs the benchmarks on optimised builds of the host and the real plugins and prints the
# figures: lifecycle (load/unload, execute, dependency call, 2,000-plugin chain, soak), the
# event bus (1 emitter, 10 subscribers), reload under load through the watched folder, and the
# tables, topics and buckets repositories against their raw drivers.
#   scripts/bench.sh            full counts
#   scripts/bench.sh --quick    small counts, still optimised (CI instead runs the bench binaries
#                               with small counts on the debug build: see .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --workspace --all-features --bench lifecycle -- "$@"
cargo bench --workspace --all-features --bench bus -- "$@"
cargo bench --workspace --all-features --bench watch -- "$@"
cargo bench --workspace --all-features --bench tables -- "$@"
cargo bench --workspace --all-features --bench topics -- "$@"
cargo bench --workspace --all-features --bench buckets -- "$@"
