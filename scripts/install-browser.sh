#!/usr/bin/env bash
# The headless browser the browser tests drive (tests/test_webapp.py): Debian's
# chromium-headless-shell where apt-get is available, as root; otherwise the tests say they skip.
# Playwright itself comes from requirements-test.txt; its own browser download is not used.
set -uo pipefail
if command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq chromium-headless-shell >/dev/null \
    || echo "install-browser: apt-get could not install chromium-headless-shell; browser tests will skip" >&2
elif [ -x .venv/bin/python ]; then
  .venv/bin/python -m playwright install chromium-headless-shell \
    || echo "install-browser: no browser could be installed; browser tests will skip" >&2
else
  echo "install-browser: no apt-get as root; install chromium-headless-shell to run the browser tests" >&2
fi
exit 0
