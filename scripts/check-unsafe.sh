#!/usr/bin/env bash
# Checks the unsafe fence of STYLE.md §5: `unsafe_code` is denied workspace-wide and allowed in
# exactly two places, on `mod ffi` in host/src/loader/mod.rs and on `mod abi` in
# plugin-api/src/lib.rs (rustfmt may spread the attribute over several lines).
# One more site is accepted: `mod abi` of tests/compat/plugin-api-1.1, the frozen copy of
# plugin-api 0.1.0 that plugins/legacy-hello is built against to prove old plugins keep loading
# (docs/abi.md). It is that release's own fence, byte for byte, and is never edited
# (tests/tests/compat.rs checks a hash of its sources): it adds no new unsafe code.
set -euo pipefail
cd "$(dirname "$0")/.."
sites=$(find host plugin-api plugins examples tests -name '*.rs' -not -path '*/target/*' -print0 \
  | xargs -0 perl -0ne 'while (/#!?\[\s*(?:allow|expect)\(\s*unsafe_code/g) { print "$ARGV\n" }')
count=$(printf '%s' "$sites" | grep -c . || true)
expected=$'host/src/loader/mod.rs\nplugin-api/src/lib.rs\ntests/compat/plugin-api-1.1/src/lib.rs'
if [ "$count" -ne 3 ] || [ "$(printf '%s\n' "$sites" | sort)" != "$expected" ]; then
  echo "expected allow(unsafe_code) exactly in loader/mod.rs, plugin-api/src/lib.rs and the" >&2
  echo "frozen tests/compat/plugin-api-1.1/src/lib.rs; found:" >&2
  printf '%s\n' "$sites" >&2
  exit 1
fi
grep -q 'unsafe_code = "deny"' Cargo.toml || { echo "workspace lint unsafe_code = deny is missing" >&2; exit 1; }
echo "unsafe fence: 2 allow sites (host loader::ffi, plugin-api abi) + the frozen plugin-api 0.1.0 abi"
