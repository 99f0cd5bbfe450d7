#!/usr/bin/env bash
# Installs the client generators the tests run against the demo's OpenAPI document (pinned): from
# npm, openapi-typescript, openapi-fetch and the TypeScript compiler; from PyPI,
# openapi-python-client. Once, under target/client-tools; prints that directory. Safe to run from
# several tests at once.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/target/client-tools"
(
  flock 9
  mkdir -p "$tools"
  if [ ! -x "$tools/node_modules/.bin/openapi-typescript" ] || [ ! -x "$tools/node_modules/.bin/tsc" ] \
    || [ ! -d "$tools/node_modules/openapi-fetch" ]; then
    cp "$root/tests/clients/package.json" "$tools/package.json"
    (cd "$tools" && npm install --no-audit --no-fund --silent >&2)
  fi
  if [ ! -x "$tools/py/bin/openapi-python-client" ]; then
    python3 -m venv "$tools/py" >&2
    "$tools/py/bin/pip" install --quiet --disable-pip-version-check \
      openapi-python-client==0.29.1 >&2
  fi
) 9>/tmp/protogate-client-tools.lock
echo "$tools"
