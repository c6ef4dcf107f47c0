#!/usr/bin/env bash
# Builds the host and the example plugins and runs `plugin-host serve` on embedded defaults with
# the examples loaded from target/demo-plugins (the test-only plugins are left out on purpose).
# Extra arguments go to `serve` (for example --listen 127.0.0.1:0 or --watch).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p server -p plugin-hello -p plugin-greeter
mkdir -p target/demo-plugins
for p in hello greeter; do
  cp "target/debug/libplugin_${p}.so" target/demo-plugins/ 2>/dev/null \
    || cp "target/debug/libplugin_${p}.dylib" target/demo-plugins/
done
exec target/debug/plugin-host serve --plugins-dir target/demo-plugins --data-dir target/demo-data "$@"
