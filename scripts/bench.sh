#!/usr/bin/env bash
# Runs the benchmarks on optimised builds of the host and the real plugins and prints the
# figures: lifecycle (load/unload, execute, dependency call, 2,000-plugin chain, soak), the
# event bus (1 emitter, 10 subscribers), reload under load through the watched folder, the
# tables, topics and buckets repositories against their raw drivers, plugin routes on the
# application listener reloaded 200 times under a client (zero-downtime), the durable job queue
# on SQLite and PostgreSQL (throughput and idle latency of no-op jobs), and the wrk load test
# of the application listener against the admin API's execute (scripts/loadtest.sh; 3 s per
# load with --quick).
#
# The figures of record (lifecycle, bus, tables) are also written to docs/benchmarks.md by
# scripts/bench_report.py: the machine, the date, each figure's median and spread, its goal, and
# the previous run's figures (kept in docs/benchmarks.json) for comparison. A --quick run writes
# its report to target/benchmarks-quick.md instead, leaving the record alone.
#   scripts/bench.sh            full counts
#   scripts/bench.sh --quick    small counts, still optimised (CI instead runs the bench binaries
#                               with small counts on the debug build: see .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
results=target/bench-results.jsonl
mkdir -p target
rm -f "$results"
export PLUGIN_HOST_BENCH_RESULTS="$PWD/$results"
cargo bench --workspace --all-features --bench lifecycle -- "$@"
cargo bench --workspace --all-features --bench bus -- "$@"
cargo bench --workspace --all-features --bench watch -- "$@"
cargo bench --workspace --all-features --bench tables -- "$@"
cargo bench --workspace --all-features --bench topics -- "$@"
cargo bench --workspace --all-features --bench buckets -- "$@"
cargo bench --workspace --all-features --bench app_reload -- "$@"
cargo bench --workspace --all-features --bench jobs -- "$@"
if [ "${1:-}" = "--quick" ]; then
  DURATION=${DURATION:-3} scripts/loadtest.sh
else
  scripts/loadtest.sh
fi
if [ "${1:-}" = "--quick" ]; then
  python3 scripts/bench_report.py "$results" --out target/benchmarks-quick.md
else
  python3 scripts/bench_report.py "$results" --out docs/benchmarks.md
fi
