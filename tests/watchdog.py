"""A test stuck far past its time, or a session past CI's limit, leaves evidence of where it is stuck.

pytest-timeout ends a test after 300 s by raising in its main thread; a test whose clean-up then waits
on something stuck (a database that stopped answering) never reports, and CI only sees its run cut
off. So while a test runs past ``STUCK_AFTER`` seconds (and every ``AGAIN_AFTER`` after that) this
prints, straight to the terminal: every thread of the test process, the test's child processes, and
every embedded database's threads (``RUN_DATABASE`` makes SIGUSR1 write them to its ``embedded.log``,
whose tail is printed). A session past ``SESSION_LIMIT`` prints the same and ends with status 1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import psutil
import pytest

STUCK_AFTER = 280.0  # before pytest-timeout's 300 s: the state while stuck, not during the clean-up
AGAIN_AFTER = 300.0
SESSION_LIMIT = 80 * 60.0  # CI stops a run at 90 minutes
LOG_LINES = 120


def _threads() -> str:
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        out.append(f"--- thread {names.get(ident, ident)}\n{''.join(traceback.format_stack(frame))}")
    return "\n".join(out)


def _processes() -> tuple[str, list[Path]]:
    """The test process's descendants (pid, state, CPU seconds, command) and the embedded databases'
    logs after asking each to write its threads there."""
    lines, logs = [], []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = proc.cmdline()
            cpu = proc.cpu_times()
            lines.append(f"{proc.pid} {proc.status()} cpu {cpu.user + cpu.system:.1f}s {' '.join(cmd)[:300]}")
        except psutil.Error:
            continue
        if "--storage-path" in cmd and any("faulthandler.register" in part for part in cmd):
            try:
                os.kill(proc.pid, signal.SIGUSR1)
            except OSError:
                continue
            logs.append(Path(cmd[cmd.index("--storage-path") + 1]).parent / "embedded.log")
    return "\n".join(lines), logs


def report(config: pytest.Config, why: str) -> None:
    writer = config.get_terminal_writer()
    processes, logs = _processes()
    time.sleep(3)  # the databases write their threads
    parts = [f"\n===== {why}: the test process's threads =====\n{_threads()}",
             f"===== its child processes =====\n{processes}"]
    for log in logs:
        try:
            tail = log.read_text(errors="replace").splitlines()[-LOG_LINES:]
        except OSError as exc:
            tail = [str(exc)]
        parts.append(f"===== {log} (last {LOG_LINES} lines) =====\n" + "\n".join(tail))
    capture = config.pluginmanager.getplugin("capturemanager")  # a test's output is captured: step past it
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        writer.write("\n".join(parts) + "\n", flush=True)


def pytest_configure(config: pytest.Config) -> None:
    def session_limit() -> None:
        report(config, f"the session ran past {SESSION_LIMIT / 60:.0f} minutes")
        os._exit(1)

    timer = threading.Timer(SESSION_LIMIT, session_limit)
    timer.daemon = True
    timer.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    done = threading.Event()
    began = time.monotonic()

    def watch() -> None:
        wait = STUCK_AFTER
        while not done.wait(wait):
            report(item.config, f"{item.nodeid} has run {time.monotonic() - began:.0f} s")
            wait = AGAIN_AFTER

    threading.Thread(target=watch, name="test-watchdog", daemon=True).start()
    try:
        yield
    finally:
        done.set()
