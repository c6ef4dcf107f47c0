#!/usr/bin/env bash
# Load test of the admin API with wrk (installed from Debian's packages when missing): starts an
# optimised `plugin-host serve` on a free loopback port with the example plugins, then drives
#   POST /api/v1/plugins/hello/execute   and   GET /api/v1/plugins
# for DURATION seconds each (default 10) with CONNECTIONS connections (default 32), and prints
# requests/s and the latency distribution (p50/p90/p99). Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}

if ! command -v wrk >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release -q -p server -p plugin-hello -p plugin-greeter
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cp target/release/libplugin_hello.so target/release/libplugin_greeter.so "$work/"
mkfifo "$work/out"
PLUGIN_HOST_LOG=warn target/release/plugin-host serve --listen 127.0.0.1:0 \
  --plugins-dir "$work" --data-dir "$work/data" > "$work/out" 2> "$work/log" &
server=$!
read -r first < "$work/out"
addr=${first#listening on }
echo "server at $addr"

cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"name":"load"}'
wrk.headers["Content-Type"] = "application/json"
LUA

echo "== POST /api/v1/plugins/hello/execute"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/post.lua" "$addr/api/v1/plugins/hello/execute"
echo "== GET /api/v1/plugins"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$addr/api/v1/plugins"
