#!/usr/bin/env bash
# Checks that the served OpenAPI documents tell the truth: installs schemathesis (pinned, into
# its own virtualenv under ~/.cache, only when that version is not there yet), then, each time
# with the built `target/debug/plugin-host serve` on free loopback ports, an admin token and a
# temporary data dir:
#   1. the admin API's document (`/api/v1/openapi.json`), with the example plugins `hello` and
#      `greeter` and the test plugin `jobs-demo` (whose schedules fill the job queue), and the
#      exceptions of scripts/schemathesis.toml;
#   2. the application listener's merged document (`/openapi.json`), with the example route
#      plugins `routes-demo`, `auth` and `todo`, and the exceptions of
#      scripts/schemathesis-app.toml: once with the application token, once (the `todo` tag,
#      whose routes the auth plugin guards) with an API key issued by the auth plugin.
# Every check runs (schemathesis' default, as `--checks all`; that flag would override the
# config files' per-operation exceptions, each explained there), bounded by MAX_EXAMPLES
# (default 50) per operation. Any failure fails the script; the servers are always stopped.
# The seed is fixed (1) so that the test command is repeatable; SCHEMATHESIS_SEED=N explores
# other cases. Needs `cargo build --workspace --all-features` first (scripts/test.sh runs it
# after the tests, which build everything). `--install-only` installs and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
MAX_EXAMPLES=${MAX_EXAMPLES:-50}
venv=${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/plugin-host/schemathesis-$VERSION}
# Through `python -m`: the virtualenv's own scripts name its first location, and it is moved.
st=("$venv/bin/python" -m schemathesis.cli)

# Installed beside the final place and moved in whole, so that a run in another checkout at
# the same moment never sees a half-made virtualenv.
if ! "${st[@]}" --version 2>/dev/null | grep -q "$VERSION"; then
  echo "installing schemathesis $VERSION into $venv"
  mkdir -p "$(dirname "$venv")"
  fresh=$(mktemp -d "$venv.XXXXXX")
  if ! python3 -m venv "$fresh" 2>/dev/null; then
    # Debian's own python3 needs its venv package; install it where we may, then try again.
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      apt-get install -y -qq python3-venv >/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }
    fi
    rm -rf "$fresh"
    python3 -m venv "$fresh" || {
      echo "python3 cannot make a virtualenv (on Debian/Ubuntu: apt-get install python3-venv)" >&2
      rm -rf "$fresh"
      exit 1
    }
  fi
  "$fresh/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
  rm -rf "$venv"
  mv -T "$fresh" "$venv"
  "${st[@]}" --version | grep -q "$VERSION"
fi
if [ "${1:-}" = "--install-only" ]; then
  exit 0
fi

binary=target/debug/plugin-host
for f in "$binary" target/debug/libplugin_{hello,greeter,jobs_demo,routes_demo,auth,todo}.so; do
  if [ ! -f "$f" ]; then
    echo "$f is missing: run cargo build --workspace --all-features first" >&2
    exit 1
  fi
done

work=$(mktemp -d)
server=
stop() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  server=
}
trap 'stop; rm -rf "$work"' EXIT

# Starts `plugin-host serve` with the admin token, a fresh data folder and the plugins named
# (library stems) in a fresh folder, plus any extra arguments; sets `admin` (and `app` when the
# application listener is on) to their URLs. The first line of stdout is `listening on
# http://ADDR`, printed once the plugins folder is loaded; `app listening on` follows.
start() {
  local run=$1 plugins=$2
  shift 2
  mkdir -p "$work/$run/plugins"
  for p in $plugins; do cp "target/debug/libplugin_$p.so" "$work/$run/plugins/"; done
  PLUGIN_HOST_ADMIN_TOKEN=$token PLUGIN_HOST_LOG=warn "$binary" serve --listen 127.0.0.1:0 \
    --plugins-dir "$work/$run/plugins" --data-dir "$work/$run/data" "$@" \
    > "$work/$run/out" 2> "$work/$run/log" &
  server=$!
  local deadline=$((SECONDS + 30)) want=1
  [ $# -gt 0 ] && want=2
  until [ "$(grep -c 'listening on ' "$work/$run/out" 2>/dev/null)" -ge "$want" ]; do
    if ! kill -0 "$server" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "plugin-host serve did not start:" >&2
      cat "$work/$run/log" >&2
      exit 1
    fi
    sleep 0.1
  done
  admin=$(sed -n 's/^listening on //p' "$work/$run/out" | head -n1)
  app=$(sed -n 's/^app listening on //p' "$work/$run/out" | head -n1)
}

# One schemathesis run against document URL $2 with config file $1 and the bearer token $3,
# then the options given; prints the server log on failure and remembers the failure.
rc=0
check() {
  local config=$PWD/scripts/$1 url=$2 bearer=$3 run_rc=0
  shift 3
  echo "schemathesis $VERSION against $url $* (max $MAX_EXAMPLES examples per operation)"
  # Run from the temporary folder: schemathesis keeps a cache in `.schemathesis/` of its cwd.
  (cd "$work" && "${st[@]}" --config-file "$config" run "$url" \
    --header "Authorization: Bearer $bearer" \
    --max-examples "$MAX_EXAMPLES" \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --generation-database none \
    --request-timeout 20 \
    --no-color "$@") \
    || run_rc=$?
  if [ "$run_rc" != 0 ]; then
    echo "schemathesis found mismatches (exit $run_rc); server log:" >&2
    tail -n 50 "$work"/*/log >&2
    rc=$run_rc
  fi
}

token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

# 1. The admin API. The event stream (SSE) never ends, so it is left out; tests/tests/api.rs
# covers it.
start admin "hello greeter jobs_demo"
check schemathesis.toml "$admin/api/v1/openapi.json" "$token" --exclude-path /api/v1/events/stream
stop

# 2. The application listener's merged document, with the example route plugins loaded: the
# `token` routes get the application token, the `plugin:auth` routes (tag `todo`) an API key
# that the auth plugin issues through the admin API.
app_token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export PLUGIN_HOST_APP_TOKEN=$app_token
start app "routes_demo auth todo" --app-listen 127.0.0.1:0
# Through the virtualenv's Python (the script needs no curl).
key=$("$venv/bin/python" - "$admin" "$token" <<'PY' || true
import json, sys, urllib.request
admin, token = sys.argv[1], sys.argv[2]
req = urllib.request.Request(
    f"{admin}/api/v1/plugins/auth/call/create_key",
    data=json.dumps({"user": "schemathesis"}).encode(),
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
)
with urllib.request.urlopen(req, timeout=20) as answer:
    print(json.load(answer)["output"]["key"])
PY
)
if [ -z "$key" ]; then
  echo "the auth plugin issued no API key" >&2
  exit 1
fi
check schemathesis-app.toml "$app/openapi.json" "$app_token" --exclude-tag todo
check schemathesis-app.toml "$app/openapi.json" "$key" --include-tag todo
exit "$rc"
