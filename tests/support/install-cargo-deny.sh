#!/usr/bin/env bash
# Installs cargo-deny from crates.io into the checkout's target directory if it is not there yet,
# and prints the path of its binary. A debug build: the checks take seconds either way, and it
# compiles in a fraction of the release profile's time (fat LTO, one codegen unit). Safe to run
# from several tests at once.
set -euo pipefail
cd "$(dirname "$0")/../.."

version=0.20.2
root="$PWD/target/tools/cargo-deny-$version"
binary="$root/bin/cargo-deny"
(
  flock 9
  if [ ! -x "$binary" ]; then
    echo "installing cargo-deny $version into $root…" >&2
    cargo install --quiet --locked --debug --version "$version" --root "$root" \
      --target-dir "$PWD/target/tools/build" cargo-deny >&2
    rm -rf "$PWD/target/tools/build"
  fi
) 9>"${TMPDIR:-/tmp}/protogate-install-cargo-deny.lock"
echo "$binary"
