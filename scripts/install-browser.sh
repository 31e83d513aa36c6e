#!/usr/bin/env bash
# The headless browser the browser tests drive (tests/test_webapp*.py, tests/test_console.py):
# Debian's chromium-headless-shell through apt-get where it runs as root; otherwise Playwright's own
# download (into ~/.cache/ms-playwright, where tests/find_browser.py looks too). Exits non-zero when
# no browser is usable afterwards, so CI stops here instead of running the browser tests into skips.
# Playwright itself comes from requirements-test.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if "$PY" tests/find_browser.py >/dev/null 2>&1; then
  "$PY" tests/find_browser.py
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # wait for another apt (a second checkout installing the same package) instead of failing on its lock
  apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null \
    && apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium-headless-shell >/dev/null \
    || echo "install-browser: apt-get could not install chromium-headless-shell" >&2
fi
if ! "$PY" tests/find_browser.py >/dev/null 2>&1 && [ -x .venv/bin/python ]; then
  .venv/bin/python -m playwright install chromium-headless-shell \
    || echo "install-browser: playwright could not download chromium-headless-shell" >&2
fi
if ! "$PY" tests/find_browser.py; then
  echo "install-browser: no usable browser; the browser tests cannot run (install chromium-headless-shell)" >&2
  exit 1
fi
