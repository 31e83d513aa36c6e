#!/usr/bin/env bash
# What the container test (tests/test_package.py) needs: podman with runc, and debootstrap to make
# a local Debian base image (no container registry is reachable here). Debian's packages through
# apt-get, as root. The sandbox refuses setrlimit, so podman is told to set no default ulimits.
# Exits non-zero when podman cannot run a container afterwards, so CI stops here instead of
# running the container test into a skip.
set -uo pipefail
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null \
      && apt-get -o DPkg::Lock::Timeout=600 install -y -qq podman runc debootstrap >/dev/null \
      || echo "install-container-tools: apt-get could not install podman, runc and debootstrap" >&2
  else
    echo "install-container-tools: install podman, runc and debootstrap (apt-get as root does it)" >&2
  fi
fi
if [ "$(id -u)" = 0 ] && ! grep -qs "default_ulimits" /etc/containers/containers.conf; then
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n' >> /etc/containers/containers.conf
fi
for tool in podman runc debootstrap; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "install-container-tools: $tool is missing; the container test cannot run" >&2
    exit 1
  fi
done
podman --runtime runc --cgroup-manager=cgroupfs info >/dev/null || {
  echo "install-container-tools: podman does not run here" >&2
  exit 1
}
podman --version
