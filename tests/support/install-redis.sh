#!/usr/bin/env bash
# Installs Debian's redis-server for the rate-limit tests if it is not there yet, and prints the
# path of its binary. Safe to run from several tests at once.
set -euo pipefail

find_redis() {
  for candidate in /usr/bin/redis-server /usr/local/bin/redis-server; do
    if [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

find_redis && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
(
  flock 9
  if ! find_redis >/dev/null; then
    $sudo apt-get update -qq >&2
    # The package's own service is not wanted: the tests start the server themselves.
    $sudo apt-get install -y -qq --no-install-recommends redis-server >&2
  fi
) 9>/tmp/protogate-install-redis.lock
find_redis
