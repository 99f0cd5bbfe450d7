#!/usr/bin/env bash
# The REST check of a repository of protos, as a CI job: validate the google.api.http rules,
# print the route table, write the OpenAPI document, and compare the REST surface with the
# committed snapshot. It runs protogate-build alone: nothing is generated into Rust, nothing is
# compiled. Every step is a plain command, so the job is the same on any CI and on a laptop.
#
# Two modes:
#   locally (BASE_REF unset): the protos are compared with the snapshot in the working tree; when
#     there is none yet it is written, and when the check passes it is brought up to date, to be
#     committed with the protos.
#   in CI (BASE_REF=origin/main, say): the protos are compared with the snapshot as BASE_REF has
#     it, and the committed snapshot must be the surface of these protos (run the script locally
#     and commit it).
#
# Settings (environment):
#   PROTOGATE_BUILD  the protogate-build binary        (default: protogate-build on PATH)
#   PROTO_DIR        the protos, and their include root (default: proto)
#   PROTO_INCLUDES   more include directories, colon-separated (default: none)
#   SURFACE          the committed snapshot            (default: rest-surface.json)
#   ACCEPTED         breaking changes accepted on purpose, one id a line
#                                                      (default: rest-breaking-accepted.txt)
#   OPENAPI_OUT      where the OpenAPI document goes   (default: openapi.json)
#   BASE_REF         the git ref to compare against    (default: unset, the local mode)
#
# Exit status: 0 when every step passes; 1 when the protos fail a step (invalid rules, an
# unaccepted breaking change, a stale snapshot); 2 when a step could not run.
set -euo pipefail

bin="${PROTOGATE_BUILD:-protogate-build}"
proto_dir="${PROTO_DIR:-proto}"
surface="${SURFACE:-rest-surface.json}"
accepted="${ACCEPTED:-rest-breaking-accepted.txt}"
openapi="${OPENAPI_OUT:-openapi.json}"

inputs=(-I "$proto_dir")
if [ -n "${PROTO_INCLUDES:-}" ]; then
  IFS=: read -r -a extra <<<"$PROTO_INCLUDES"
  for dir in "${extra[@]}"; do inputs+=(-I "$dir"); done
fi
inputs+=("$proto_dir")

step() { printf '\n== %s\n' "$*"; }

step "check the rules"
"$bin" check "${inputs[@]}"

step "routes"
"$bin" routes "${inputs[@]}"

step "OpenAPI document -> $openapi"
"$bin" openapi -o "$openapi" "${inputs[@]}"

accept=()
if [ -f "$accepted" ]; then accept=(--accept "$accepted"); fi

step "REST breaking changes"
if [ -n "${BASE_REF:-}" ]; then
  previous="$(mktemp)"
  current="$(mktemp)"
  trap 'rm -f "$previous" "$current"' EXIT
  if git show "$BASE_REF:$surface" >"$previous" 2>/dev/null; then
    "$bin" breaking --against "$previous" "${accept[@]}" "${inputs[@]}"
  else
    echo "$BASE_REF has no $surface: nothing to compare against"
  fi
  "$bin" surface -o "$current" "${inputs[@]}"
  if ! cmp -s "$current" "$surface"; then
    echo "$surface is not the REST surface of these protos: run $0 locally and commit it" >&2
    exit 1
  fi
elif [ ! -f "$surface" ]; then
  "$bin" surface -o "$surface" "${inputs[@]}"
  echo "wrote the first snapshot, $surface: commit it with the protos"
else
  "$bin" breaking --against "$surface" "${accept[@]}" "${inputs[@]}"
  "$bin" surface -o "$surface" "${inputs[@]}"
  echo "$surface is up to date: commit it with the protos"
fi
