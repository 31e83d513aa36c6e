"""Finds the headless Chromium the browser tests drive, wherever scripts/install-browser.sh put it.

Standard library only: the install script runs it with any Python 3 to check that a browser is
usable (``python3 tests/find_browser.py`` prints its path and version, or exits 1), and
tests/conftest.py imports it, so the script and the tests look in the same places:

1. ``CHROMIUM_PATH``;
2. ``chromium-headless-shell`` or ``chromium`` on ``PATH`` (Debian's packages, installed by apt);
3. Playwright's own download (the script's fallback where apt cannot install):
   ``$PLAYWRIGHT_BROWSERS_PATH`` or ``~/.cache/ms-playwright``, ``chromium_headless_shell-*``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def _playwright_downloads() -> list[Path]:
    root = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / ".cache" / "ms-playwright")
    found = [*root.glob("chromium_headless_shell-*/chrome-linux/headless_shell"),
             *root.glob("chromium_headless_shell-*/chrome-headless-shell-linux64/chrome-headless-shell")]
    return sorted(found, reverse=True)  # the newest revision first


def candidates() -> list[str]:
    """Every place a browser may be, in the order they are preferred."""
    found = [os.environ.get("CHROMIUM_PATH"), shutil.which("chromium-headless-shell"), shutil.which("chromium"),
             *map(str, _playwright_downloads())]
    return [path for path in found if path]


def version(path: str) -> str | None:
    """The browser's ``--version`` line, or None when it does not run."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or "unknown version") if done.returncode == 0 else None


def find_browser() -> str | None:
    """The first candidate that runs (``CHROMIUM_PATH`` is taken as it is: a wrong one fails loudly)."""
    if os.environ.get("CHROMIUM_PATH"):
        return os.environ["CHROMIUM_PATH"]
    return next((path for path in candidates() if version(path)), None)


if __name__ == "__main__":
    browser = find_browser()
    if browser is None or not version(browser):
        print(f"no usable headless Chromium (looked at: {candidates() or 'nothing found'})", file=sys.stderr)
        sys.exit(1)
    print(browser, version(browser))
