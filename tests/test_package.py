"""The product as a user installs it: ``python -m build`` makes the wheel, a fresh venv installs it
(its dependencies from the index, as declared in pyproject.toml), and the installed ``apiserver``
command runs from another folder with the ClearML web app at / and no flags for it. Then the
container image (Dockerfile, scripts/build-image.sh) on a Debian base made here, run with podman."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

import pytest
import requests

from tests.helpers import ADMIN_KEY, ADMIN_SECRET, ROOT, ApiClient, ServerProcess, free_port, sign_in_page
from tests.test_clearml_sdk_files import make_workdir, run_sdk
from tests.test_multi_host import SDK_UPLOAD

PACKAGED_WEBAPP = ROOT / "apiserver" / "webapp"


def _run(argv: list[str], cwd: Path, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
                               **(env or {})})
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out)
    wheels = list(out.glob("apiserver-*.whl"))
    assert len(wheels) == 1 and list(out.glob("apiserver-*.tar.gz")), list(out.iterdir())
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its bin folder."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(venv)], cwd=venv)
    _run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)], cwd=venv)
    return venv / "bin"


def _start_installed(bindir: Path, cwd: Path, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """The installed command from ``cwd``, with no admin key given: the server generates one."""
    port = free_port()
    proc = ServerProcess(None, "apiserver", argv=[str(bindir / "apiserver"), "--port", str(port), *args],
                         port=port, cwd=cwd, extra_env=env)
    for name in ("APISERVER_ADMIN_ACCESS_KEY", "APISERVER_ADMIN_SECRET_KEY", "APISERVER__database__name",
                 "PYTHONPATH"):
        proc.env.pop(name, None)
    cwd.mkdir(parents=True, exist_ok=True)
    return proc.start(cwd, timeout=90)


def test_the_installed_package_runs_from_any_folder_with_the_web_app_at_the_root(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(installed / "python"), "-c", "import apiserver; print(apiserver.__file__)"], cwd=elsewhere)
    package = Path(where.strip()).parent
    assert package.is_relative_to(installed.parent), where  # the installed copy, not the source tree
    # the web app inside the package is the vendored build, file for file
    sums = (package / "webapp" / "SHA256SUMS").read_text().splitlines()
    assert sums == (PACKAGED_WEBAPP / "SHA256SUMS").read_text().splitlines() and len(sums) > 1000
    for line in sums:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((package / "webapp" / "clearml-web" / name).read_bytes()).hexdigest() == digest, name
    assert "database" in _run([str(installed / "apiserver"), "--help"], cwd=elsewhere)

    server = _start_installed(installed, elsewhere, "--data-dir", "mydata")  # relative to where it runs
    try:
        assert requests.get(server.base_url + "/health", timeout=10).json() == {"status": "ok", "database": "ok"}
        index = requests.get(server.base_url + "/", timeout=10)
        assert index.status_code == 200
        assert index.content == (PACKAGED_WEBAPP / "clearml-web" / "index.html").read_bytes()
        route = requests.get(server.base_url + "/projects/x/experiments", timeout=10)
        assert route.status_code == 200 and route.content == index.content
        conf = requests.get(server.base_url + "/configuration.json", timeout=10).json()
        assert (conf["apiBaseUrl"], conf["fileBaseUrl"]) == ("/api", "/files")
        console = requests.get(server.base_url + "/console/", timeout=10)
        assert console.status_code == 200 and "/console/app.js" in console.text
        creds_file = elsewhere / "mydata" / "admin_credentials.json"
        assert creds_file.stat().st_mode & 0o077 == 0
        creds = json.loads(creds_file.read_text())
        admin = server.client().login(creds["access_key"], creds["secret_key"])
        assert admin.call("users.get_current_user")["user"]["role"] == "admin"
        assert (elsewhere / "mydata" / "db").is_dir() and not (elsewhere / "data").exists()
    finally:
        assert server.stop() == 0


def test_turning_the_web_app_off_or_serving_another_build(installed, tmp_path):
    server = _start_installed(installed, tmp_path / "off", env={"APISERVER__webapp__enabled": "false"})
    try:
        assert requests.get(server.base_url + "/", timeout=10).status_code == 404
        assert requests.get(server.base_url + "/projects/x/experiments", timeout=10).status_code == 404
        assert requests.get(server.base_url + "/console/", timeout=10).status_code == 200
    finally:
        assert server.stop() == 0
    other = tmp_path / "other-build"
    other.mkdir()
    (other / "index.html").write_text("<!doctype html><title>another app</title>")
    server = _start_installed(installed, tmp_path / "other", "--webapp", str(other))
    try:
        assert requests.get(server.base_url + "/", timeout=10).text == (other / "index.html").read_text()
        assert requests.get(server.base_url + "/some/route", timeout=10).text == (other / "index.html").read_text()
    finally:
        assert server.stop() == 0


def test_a_person_signs_in_to_the_web_app_of_the_installed_package_with_the_generated_admin(installed, tmp_path,
                                                                                        page):
    """No flags: the server generates the admin, whose user name and password (in
    ``./data/admin_credentials.json``) open the web app's login page."""
    here = tmp_path / "fresh"
    server = _start_installed(installed, here)
    try:
        creds = json.loads((here / "data" / "admin_credentials.json").read_text())
        sign_in_page(page, server.base_url, creds["username"], creds["password"])
        page.get_by_text("Projects Dashboard", exact=False).first.wait_for(timeout=30_000)
        calls = {name: status for status, name, _ in page.api_log}
        assert calls["auth.login"] == 200 and calls["users.get_current_user"] == 200
        assert not [c for c in page.api_log if c[0] >= 400], page.api_log
    finally:
        assert server.stop() == 0


# podman as root in this sandbox: runc, cgroups by folder, the host's network (scripts/install-container-tools.sh)
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
BASE_IMAGE = "localhost/apiserver-test-base:bookworm"


def _podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 or not check, f"podman {' '.join(args)}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The product's image, built by scripts/build-image.sh on a minimal Debian made by debootstrap
    (no registry is reachable here; the image then installs Debian's python3). The base is kept
    between runs on one machine; the product's image is not."""
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: run scripts/install-container-tools.sh")
    if _podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as rootfs:
            _run(["debootstrap", "--variant=minbase", "bookworm", rootfs], cwd=ROOT, timeout=900)
            tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
            imported = subprocess.run([*PODMAN, "import", "-", BASE_IMAGE], stdin=tar.stdout, capture_output=True,
                                      text=True, timeout=600)
            tar.stdout.close()
            assert tar.wait() == 0 and imported.returncode == 0, imported.stderr
    tag = f"localhost/apiserver-test:{uuid4().hex[:8]}"
    _run(["bash", "scripts/build-image.sh", tag, "--", "--network", "host"], cwd=ROOT, timeout=1200,
         env={"BASE": BASE_IMAGE, "ENGINE": " ".join(PODMAN), "PYTHON": sys.executable})
    yield tag
    _podman("rmi", "-f", tag, check=False)


def _wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{url}/health did not answer within {timeout}s"
        time.sleep(0.5)


def test_the_container_serves_the_product_and_keeps_its_data_across_a_restart(image, tmp_path):
    name = f"apiserver-test-{uuid4().hex[:8]}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    _podman("run", "-d", "--name", name, "--network", "host", "-v", f"{name}:/data",
            "-e", f"APISERVER__apiserver__listen__port={port}", "-e", f"APISERVER_ADMIN_ACCESS_KEY={ADMIN_KEY}",
            "-e", f"APISERVER_ADMIN_SECRET_KEY={ADMIN_SECRET}", image)
    try:
        _wait_healthy(url)
        index = requests.get(url + "/", timeout=10)
        assert index.content == (PACKAGED_WEBAPP / "clearml-web" / "index.html").read_bytes()
        assert _podman("exec", name, "id", "-u").stdout.strip() not in ("", "0")  # not root
        assert _podman("healthcheck", "run", name, check=False).returncode == 0  # the image's HEALTHCHECK
        got = run_sdk(make_workdir(url, tmp_path), SDK_UPLOAD, "upload.py")
        path = got["url"][len(url):]

        _podman("stop", "-t", "30", name)
        assert _podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip() == "0"  # a clean stop
        _podman("start", name)
        _wait_healthy(url)
        admin = ApiClient(url).login(ADMIN_KEY, ADMIN_SECRET)
        task = admin.call("tasks.get_by_id", task=got["task"])["task"]
        assert (task["name"], task["status"]) == ("upload via A", "completed")
        blob = requests.get(url + path, headers={"Authorization": admin.auth}, timeout=30)
        assert blob.status_code == 200 and hashlib.sha256(blob.content).hexdigest() == got["sha256"]
    finally:
        logs = _podman("logs", name, check=False).stdout
        _podman("rm", "-f", "-t", "5", name, check=False)
        _podman("volume", "rm", "-f", name, check=False)
    assert "Traceback" not in logs, logs[-3000:]
