#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests if it is not there yet, and prints the path of
# its binary. Safe to run from several tests at once.
set -euo pipefail

find_chromium() {
  for candidate in /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

find_chromium && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
(
  flock 9
  if ! find_chromium >/dev/null; then
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq --no-install-recommends chromium >&2
  fi
) 9>/tmp/protogate-install-chromium.lock
find_chromium
