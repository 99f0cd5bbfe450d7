#!/usr/bin/env bash
# Installs the Python tools the tests run (pinned, from PyPI) into a virtualenv under target/,
# once, and prints the virtualenv's bin directory. Safe to run from several tests at once.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/py-tools"
(
  flock 9
  # prometheus-client has no command of its own: the tests import its OpenMetrics parser.
  if [ ! -x "$venv/bin/openapi-spec-validator" ] || [ ! -x "$venv/bin/schemathesis" ] \
    || [ ! -x "$venv/bin/kubernetes-validate" ] \
    || ! "$venv/bin/python" -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      openapi-spec-validator==0.9.0 schemathesis==4.32.5 kubernetes-validate==1.37.0 \
      prometheus-client==0.23.1 >&2
  fi
) 9>/tmp/protogate-python-tools.lock
echo "$venv/bin"
