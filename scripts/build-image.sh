#!/usr/bin/env bash
# Builds the container image (Dockerfile): the project's wheel and every dependency's wheel are built
# on this host into a fresh build context, so the image build installs from that folder alone.
#
#   scripts/build-image.sh [TAG] [-- EXTRA BUILD ARGS...]
#
# TAG defaults to apiserver:latest. Environment:
#   BASE    the base image (default python:3.11-slim; a Debian image without Python gets Debian's python3)
#   ENGINE  the container command, with any global options (default: docker, else podman)
#   PYTHON  the Python that builds the wheels (default python3; needs pip and the 'build' package, as
#           requirements-test.txt installs); it must be the base image's Python version (3.11)
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=apiserver:latest
if [ $# -gt 0 ] && [ "$1" != "--" ]; then TAG=$1; shift; fi
[ "${1:-}" = "--" ] && shift
PY=${PYTHON:-python3}
BASE=${BASE:-python:3.11-slim}
if [ -z "${ENGINE:-}" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then ENGINE=docker
  elif command -v podman >/dev/null 2>&1; then ENGINE=podman
  else echo "build-image: neither docker nor podman is installed" >&2; exit 1; fi
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# sdist, then the wheel from it in a temporary folder: nothing is built inside the checkout
"$PY" -m build --outdir "$ctx/dist" . >/dev/null
"$PY" -m pip wheel -q --disable-pip-version-check --wheel-dir "$ctx/wheels" "$ctx"/dist/apiserver-*.whl
cp Dockerfile "$ctx/"
FORMAT=()
case "$ENGINE" in podman*) FORMAT=(--format docker) ;; esac  # OCI images drop HEALTHCHECK
# shellcheck disable=SC2086 # ENGINE may carry global options
$ENGINE build "${FORMAT[@]}" --build-arg "BASE=$BASE" -t "$TAG" "$@" "$ctx"
echo "built $TAG from $BASE"
