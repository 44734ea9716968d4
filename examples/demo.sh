#!/usr/bin/env bash
# The main job end to end on the bundled example: builds the host and the
# OAuth 2.0 plugin, puts the plugin into ./plugins, starts the bundled real
# OAuth server (oidc-provider, tests/oidc) on 127.0.0.1:47811, runs the host
# on examples/context.json and examples/record.json as a `test`
# installation, prints the enriched record, and stops the server.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
port=47811

for tool in cargo node npm; do
  command -v "$tool" >/dev/null || { echo "demo: '$tool' is needed; see README.md" >&2; exit 1; }
done

echo "demo: building the host and the OAuth plugin (a few minutes the first time)" >&2
cargo build --quiet -p posthandler-host -p posthandler-oauth2
mkdir -p plugins
cp target/debug/libposthandler_oauth2.so plugins/

if [ ! -d tests/oidc/node_modules/oidc-provider ]; then
  (cd tests/oidc && npm ci --no-audit --no-fund --silent)
fi

log="$(mktemp)"
node tests/oidc/server.mjs --port "$port" >"$log" 2>/dev/null &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q '^listening ' "$log" && break
  kill -0 "$server" 2>/dev/null || { echo "demo: the OAuth server did not start (is port $port free?)" >&2; exit 1; }
  sleep 0.1
done
grep -q '^listening ' "$log" || { echo "demo: the OAuth server did not answer within 10 s" >&2; exit 1; }

target/debug/posthandler-host run --server-type test --plugins plugins \
  --context examples/context.json --record examples/record.json
