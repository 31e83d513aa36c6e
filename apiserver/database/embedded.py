"""Owns the embedded database: a SecantusDB server run as a child process on a loopback port.

One data folder is served by one database process, owned by one server process. The owner holds
an exclusive lock on ``<data_dir>/embedded.lock`` and writes the address to
``<data_dir>/embedded.json`` (gunicorn workers get the address from the master, never from here).
Another server pointed at the same folder waits for the lock (a restart overlapping the old
server's shutdown), then fails with a message naming the owner: joining a database that another
process is about to stop would leave it without one.

The database requires authentication: on a folder's first start the server generates a user and
password, kept in ``<data_dir>/db_credentials.json`` (mode 0600, the folder 0700), provisions it
on a short start without authentication (the folder holds no data yet, or only this server's),
then restarts the database with ``--auth`` and removes any other user, so that other local users
cannot read the database (token secret included) through its loopback port. That open start always
listens on loopback; only the authenticated database listens where ``host`` says (``python -m
apiserver database`` runs it as a database host for API hosts elsewhere).

SecantusDB is GPL-2.0 and runs as a separate program; this project never imports it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

URI_OPTIONS = "retryWrites=false"  # pymongo's retryable writes slow SecantusDB down ~8x
DB_USER = "apiserver"
# ``python -m secantus``, and SIGUSR1 makes the database write every thread's stack to embedded.log:
# a database that stopped answering can be looked into (``kill -USR1 <pid in embedded.json>``).
RUN_DATABASE = ("import faulthandler, runpy, signal; faulthandler.register(signal.SIGUSR1, all_threads=True); "
                "runpy.run_module('secantus', run_name='__main__', alter_sys=True)")
CREDENTIALS_FILE = "db_credentials.json"
LOOPBACK = "127.0.0.1"
WILDCARDS = ("0.0.0.0", "::")


def connectable(host: str) -> str:
    """The address this machine's processes reach a listener on ``host`` at (a wildcard reads as loopback)."""
    return LOOPBACK if host in WILDCARDS else host


def host_port(host: str, port: int) -> str:
    """``host:port`` as a URL names it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux: the database gets SIGTERM if the server process dies without cleaning up.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()  # a Ctrl-C in the terminal reaches the server, which stops the database itself


def _wait_until_listening(host: str, port: int, proc: subprocess.Popen | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"embedded database exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"embedded database did not listen on {host}:{port} within {timeout:.0f}s")


class EmbeddedDatabase:
    """Start, find or stop the SecantusDB server of one data folder."""

    def __init__(self, data_dir: str | Path, host: str = "127.0.0.1", port: int = 0,
                 cache_size: str = "1G", sync_on_commit: bool = False, start_timeout: float = 60):
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port
        self.cache_size = cache_size
        self.sync_on_commit = sync_on_commit
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self._lock_fd: int | None = None
        self._owner_pid: int | None = None  # forked children (gunicorn workers) must not stop it
        self._password: str | None = None

    @property
    def uri(self) -> str:
        """The URI this machine's processes connect with (a wildcard listen address reads as loopback)."""
        return self.uri_for(connectable(self.host))

    def uri_for(self, host: str) -> str:
        """The URI that reaches the database at ``host`` (another machine names this one)."""
        where = host_port(host, self.port)
        if self._password is None:
            return f"mongodb://{where}/?{URI_OPTIONS}"
        return f"mongodb://{DB_USER}:{self._password}@{where}/?{URI_OPTIONS}&authSource=admin"

    @property
    def owner(self) -> bool:
        """True in the process that started the server (not in processes forked from it)."""
        return self.process is not None and self._owner_pid == os.getpid()

    def ensure_running(self) -> str:
        """Start the server for this folder once the folder is free; return its URI (with credentials)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        fd = os.open(self.data_dir / "embedded.lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise RuntimeError(f"the data folder {self.data_dir} is in use by another server "
                                       f"({self._owner_info()}); stop it or use another --data-dir") from None
                time.sleep(0.2)
        self._lock_fd = fd
        self._owner_pid = os.getpid()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self.uri

    def running_uri(self) -> str | None:
        """The URI (with credentials) of the database that another process runs for this folder, or
        None when no process owns the folder. Tools run beside a server on its data folder (backup,
        import) join through this: the owner holds ``embedded.lock`` and writes its address to
        ``embedded.json``; the credentials are the folder's own (readable by its user only). An owner
        still starting is waited for (up to ``start_timeout``)."""
        try:
            fd = os.open(self.data_dir / "embedded.lock", os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return None  # nobody holds it (closing the fd below releases it)
            except BlockingIOError:
                pass
        finally:
            os.close(fd)
        deadline = time.monotonic() + self.start_timeout
        while True:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                info = json.loads((self.data_dir / "embedded.json").read_text())
                password = json.loads((self.data_dir / CREDENTIALS_FILE).read_text())["password"]
                os.kill(int(info["pid"]), 0)  # a file left by an owner that died is not this owner's
                with socket.create_connection((connectable(info["host"]), int(info["port"])), timeout=1):
                    pass
                self.host, self.port, self._password = info["host"], int(info["port"]), password
                return self.uri
            if time.monotonic() >= deadline:
                raise RuntimeError(f"the data folder {self.data_dir} is locked by a server whose database "
                                   f"does not answer ({self._owner_info()})")
            time.sleep(0.2)

    def _owner_info(self) -> str:
        try:
            info = json.loads((self.data_dir / "embedded.json").read_text())
            return f"server pid {info.get('owner_pid')}, database on port {info.get('port')}"
        except (OSError, ValueError):
            return "owner unknown"

    def _start(self) -> None:
        port = self.port or _free_port(self.host)
        creds = self.data_dir / CREDENTIALS_FILE
        if creds.exists():
            self._password = json.loads(creds.read_text())["password"]
            self._launch(port, auth=True)
        else:
            self._provision(port, creds)
        info = {"pid": self.process.pid, "owner_pid": os.getpid(), "host": self.host, "port": port}
        (self.data_dir / "embedded.json").write_text(json.dumps(info))
        log.info("embedded database (SecantusDB) listening on %s:%s, data in %s", self.host, port,
                 self.data_dir / "db")

    def _launch(self, port: int, auth: bool) -> None:
        host = self.host if auth else self._open_host()
        cmd = [sys.executable, "-c", RUN_DATABASE, "--host", host, "--port", str(port),
               "--storage-path", str(self.data_dir / "db"), "--cache-size", str(self.cache_size),
               "--log-level", "WARNING"]
        if auth:
            cmd.append("--auth")
        if self.sync_on_commit:
            cmd.append("--sync-on-commit")
        log_file = open(self.data_dir / "embedded.log", "ab")  # noqa: SIM115 - kept for the child's life
        try:
            # The database holds the folder's lock too (the same open file): after a kill -9 of the
            # server it shuts down on SIGTERM, and a restart must wait for that, not only for the server.
            self.process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
                                            pass_fds=(self._lock_fd,) if self._lock_fd is not None else ())
        finally:
            log_file.close()
        self.port = port
        _wait_until_listening(connectable(host), port, self.process, self.start_timeout)

    def _open_host(self) -> str:
        """Where the database listens while it has no authentication: loopback, whatever the config says
        (the short open start that provisions a new folder's user is never reachable from outside)."""
        return self.host if is_loopback(self.host) else LOOPBACK

    def _provision(self, port: int, creds: Path) -> None:
        """First start of a folder: create the server's database user, then restart with --auth."""
        import pymongo  # only the owner of a folder's first start needs it here

        password = secrets.token_urlsafe(32)
        self._launch(port, auth=False)
        client = pymongo.MongoClient(self.uri_for(self._open_host()), serverSelectionTimeoutMS=10_000)
        try:
            existing = {u["user"] for u in client.admin.command("usersInfo")["users"]}
            command = "updateUser" if DB_USER in existing else "createUser"
            client.admin.command(command, DB_USER, pwd=password, roles=[{"role": "root", "db": "admin"}])
        finally:
            client.close()
        self._stop_process()
        fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"user": DB_USER, "password": password}, fh)
        self._password = password
        self._launch(port, auth=True)
        client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=10_000)
        try:  # whoever connected during the short open start may have added a user: none stays
            for user in client.admin["system.users"].find({}, {"user": 1, "db": 1}):  # users of every db
                if user["user"] != DB_USER or user.get("db") != "admin":
                    client.get_database(user.get("db", "admin")).command("dropUser", user["user"])
        finally:
            client.close()

    def _stop_process(self, timeout: float = 15) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded database did not stop in %ss; killing it", timeout)
                proc.kill()
                proc.wait()

    def stop(self, timeout: float = 15) -> None:
        """Stop the server if this process started it, and release the folder."""
        if self._owner_pid is not None and self._owner_pid != os.getpid():
            return
        self._stop_process(timeout)
        if self._lock_fd is not None:
            try:
                (self.data_dir / "embedded.json").unlink(missing_ok=True)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None
