#!/usr/bin/env bash
# Load test with wrk (installed from Debian's packages when missing): starts an optimised
# `plugin-host serve` on free loopback ports (admin API and application listener) with the
# example plugins, then drives, one after the other in the same run,
#   admin  POST /api/v1/plugins/hello/execute        {"name":"load"}
#   app    GET  /plugins/hello/greet?name=load       (hello's public route: the same greeting)
#   admin  GET  /api/v1/plugins
# for DURATION seconds each (default 10) with CONNECTIONS connections (default 32) on THREADS
# wrk threads (default 2), and prints requests/s and the latency distribution (p50/p90/p99).
# The server logs at LOG (default `warn`: no access log; LOG=info writes it).
#
# Then one line per goal of the application listener (issue 13), PASS or MISS:
#   - app requests/s >= 0.85 x admin execute requests/s (same run, same plugin, same work);
#   - app p99 < 5 ms.
# A MISS does not fail the script (exit 0): on a shared 2-core machine the figures move by more
# than the margin from one run to the next. Set STRICT=1 to exit 1 on a MISS. Any non-2xx
# answer or socket error fails it, always. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
STRICT=${STRICT:-0}
# The server's log filter: `warn` leaves out the application listener's access log (info, one
# line per request, to stderr); LOG=info measures with it.
LOG=${LOG:-warn}

if ! command -v wrk >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release -q -p server -p plugin-hello -p plugin-greeter
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cp target/release/libplugin_hello.so target/release/libplugin_greeter.so "$work/"
mkfifo "$work/out"
PLUGIN_HOST_LOG=$LOG target/release/plugin-host serve --listen 127.0.0.1:0 \
  --app-listen 127.0.0.1:0 --plugins-dir "$work" --data-dir "$work/data" > "$work/out" 2> "$work/log" &
server=$!
exec 3< "$work/out"
read -r first <&3
read -r second <&3
addr=${first#listening on }
app=${second#app listening on }
echo "admin API at $addr, application listener at $app"

cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"name":"load"}'
wrk.headers["Content-Type"] = "application/json"
LUA

# Runs wrk; prints its report and keeps it in $work/$1.txt.
load() {
  local name=$1
  shift
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" | tee "$work/$name.txt"
  if grep -qE 'Non-2xx or 3xx responses|Socket errors' "$work/$name.txt"; then
    echo "FAIL: $name had failed requests" >&2
    exit 1
  fi
}
# Requests/s of a report.
rps() { awk '/^Requests\/sec:/ { print $2 }' "$work/$1.txt"; }
# A latency percentile (50%, 99%) of a report, in milliseconds.
pct_ms() {
  awk -v p="$2" '$1 == p {
    v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v);
    if (unit == "us") v /= 1000; else if (unit == "s") v *= 1000; else if (unit == "m") v *= 60000;
    printf "%.3f", v }' "$work/$1.txt"
}

echo "== admin POST /api/v1/plugins/hello/execute"
load admin -s "$work/post.lua" "$addr/api/v1/plugins/hello/execute"
echo "== app GET /plugins/hello/greet?name=load"
load app "$app/plugins/hello/greet?name=load"
echo "== admin GET /api/v1/plugins"
load list "$addr/api/v1/plugins"

admin_rps=$(rps admin)
app_rps=$(rps app)
echo
echo "== summary ($THREADS threads, $CONNECTIONS connections, ${DURATION}s each, $(nproc) cores)"
printf '%-40s %10s %9s %9s\n' "load" "req/s" "p50 ms" "p99 ms"
for name in admin app list; do
  case $name in
    admin) label="admin POST .../hello/execute" ;;
    app) label="app GET /plugins/hello/greet" ;;
    list) label="admin GET /api/v1/plugins" ;;
  esac
  printf '%-40s %10s %9s %9s\n' "$label" "$(rps $name)" "$(pct_ms $name 50%)" "$(pct_ms $name 99%)"
done
missed=0
ratio=$(awk -v a="$app_rps" -v b="$admin_rps" 'BEGIN { printf "%.3f", a / b }')
if awk -v r="$ratio" 'BEGIN { exit !(r >= 0.85) }'; then verdict=PASS; else verdict=MISS; missed=1; fi
echo "$verdict throughput: app/admin execute = $ratio (goal >= 0.85)"
p99=$(pct_ms app 99%)
if awk -v p="$p99" 'BEGIN { exit !(p < 5) }'; then verdict=PASS; else verdict=MISS; missed=1; fi
echo "$verdict latency: app p99 = $p99 ms (goal < 5 ms)"
if [ "$STRICT" = 1 ] && [ "$missed" = 1 ]; then
  exit 1
fi
