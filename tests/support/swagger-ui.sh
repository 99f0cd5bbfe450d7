#!/usr/bin/env bash
# Installs Swagger UI (the swagger-ui-dist package, pinned, from the npm registry) under target/
# for the /docs page's browser test, once, and prints the directory of its files. Safe to run
# from several tests at once.
set -euo pipefail

version="5.35.0"
root="$(cd "$(dirname "$0")/../.." && pwd)"
prefix="$root/target/npm"
dir="$prefix/node_modules/swagger-ui-dist"
(
  flock 9
  if ! grep -q "\"version\": \"$version\"" "$dir/package.json" 2>/dev/null; then
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --silent --no-audit --no-fund "swagger-ui-dist@$version" >&2
  fi
) 9>/tmp/protogate-swagger-ui.lock
echo "$dir"
