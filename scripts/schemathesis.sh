#!/usr/bin/env bash
# Checks that the admin API's served OpenAPI document tells the truth: installs schemathesis
# (pinned, into its own virtualenv under ~/.cache, only when that version is not there yet),
# starts the built `target/debug/plugin-host serve` on a free loopback port with an admin token,
# a temporary data dir and the example plugins `hello` and `greeter`, and runs
#   st --config-file scripts/schemathesis.toml run <url>/api/v1/openapi.json
# with the bearer token against it: every check (schemathesis' default, as `--checks all`; that
# flag would override the config file's per-operation exceptions, each explained there),
# bounded by MAX_EXAMPLES (default 50) per operation. Any failure fails the script; the server
# is always stopped. The seed is fixed (1) so that the test command is repeatable;
# SCHEMATHESIS_SEED=N explores other cases. Needs
# `cargo build --workspace --all-features` first (scripts/test.sh runs it after the tests,
# which build everything). `--install-only` installs and exits.
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
for f in "$binary" target/debug/libplugin_hello.so target/debug/libplugin_greeter.so; do
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
  rm -rf "$work"
}
trap stop EXIT

mkdir "$work/plugins"
cp target/debug/libplugin_hello.so target/debug/libplugin_greeter.so "$work/plugins/"
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
PLUGIN_HOST_ADMIN_TOKEN=$token PLUGIN_HOST_LOG=warn "$binary" serve --listen 127.0.0.1:0 \
  --plugins-dir "$work/plugins" --data-dir "$work/data" > "$work/out" 2> "$work/log" &
server=$!

# The first line of stdout is `listening on http://ADDR`; the plugins folder is loaded by then.
deadline=$((SECONDS + 30))
until grep -q '^listening on ' "$work/out" 2>/dev/null; do
  if ! kill -0 "$server" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "plugin-host serve did not start:" >&2
    cat "$work/log" >&2
    exit 1
  fi
  sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$work/out" | head -n1)
echo "schemathesis $VERSION against $url (max $MAX_EXAMPLES examples per operation)"

# The event stream (SSE) never ends, so it is left out; tests/tests/api.rs covers it.
# Run from the temporary folder: schemathesis keeps a cache in `.schemathesis/` of its cwd.
config=$PWD/scripts/schemathesis.toml
rc=0
(cd "$work" && "${st[@]}" --config-file "$config" run "$url/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --max-examples "$MAX_EXAMPLES" \
  --seed "${SCHEMATHESIS_SEED:-1}" \
  --generation-database none \
  --request-timeout 20 \
  --exclude-path /api/v1/events/stream \
  --no-color) \
  || rc=$?
if [ "$rc" != 0 ]; then
  echo "schemathesis found mismatches (exit $rc); server log:" >&2
  tail -n 50 "$work/log" >&2
fi
exit "$rc"
