#!/usr/bin/env bash
# Runs the whole test suite the way CI does: formatting, lints, docs, then every test of the
# workspace (which builds the real plugins once per test binary), then schemathesis against the
# served OpenAPI document. Starts the machine's PostgreSQL first when it is installed and down,
# for the backend suites that use it.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --quiet
scripts/check-unsafe.sh
# The core library stays free of the server's crates (an embedder pays for none of them).
if cargo tree -p host -e normal --all-features --prefix none | grep -E '^(axum|clap|ureq|tracing-subscriber) '; then
  echo "the core library (host) depends on a server or CLI crate (listed above)" >&2
  exit 1
fi
cargo test --workspace --all-features

# The served OpenAPI document tells the truth: schemathesis against the built server (it
# installs itself on first use).
scripts/schemathesis.sh

# The embedding example runs against the example plugins.
mkdir -p target/example-plugins
cp target/debug/*plugin_hello.* target/debug/*plugin_greeter.* target/example-plugins/ 2>/dev/null
rm -f target/example-plugins/*.d
cargo run --quiet -p example-embed -- target/example-plugins
