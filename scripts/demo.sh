#!/usr/bin/env bash
# Builds the host and the example plugins and runs the host on embedded defaults with the
# examples loaded from target/demo-plugins (the test-only plugins are left out on purpose).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p host -p plugin-hello -p plugin-greeter
mkdir -p target/demo-plugins
for p in hello greeter; do
  cp "target/debug/libplugin_${p}.so" target/demo-plugins/ 2>/dev/null \
    || cp "target/debug/libplugin_${p}.dylib" target/demo-plugins/
done
exec target/debug/plugin-host run --plugins-dir target/demo-plugins "$@"
