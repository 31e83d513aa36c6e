"""A real MLflow for the registry tests: its own venv, a tracking server with a SQLite backend, a small
pyfunc model logged and registered by the test, and an MLflow scoring server for it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import requests

from tests.helpers import ROOT, free_port

VENV = ROOT / ".venv-mlflow"

MODEL_SCRIPT = textwrap.dedent('''
    import sys
    import mlflow
    import mlflow.pyfunc

    class CreditRisk(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            out = []
            for _, row in model_input.iterrows():
                score = min(1.0, float(row["loanAmount"]) / (float(row["monthlyIncome"]) * 50))
                out.append({"riskScore": round(score, 4), "isApproved": bool(score < 0.5)})
            return out

    mlflow.set_tracking_uri(sys.argv[1])
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=CreditRisk(), registered_model_name=sys.argv[2])
    print("MODEL_VERSION", info.registered_model_version)
''')


def mlflow_python() -> Path:
    """The MLflow venv's interpreter; built from requirements-mlflow.txt on first use (locked)."""
    if os.environ.get("MLFLOW_PYTHON"):
        return Path(os.environ["MLFLOW_PYTHON"])
    python = VENV / "bin" / "python"
    with open(ROOT / ".venv-mlflow.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (VENV / ".complete").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                            str(ROOT / "requirements-mlflow.txt")], check=True, timeout=900)
            (VENV / ".complete").write_text("ok\n")
    return python


def build_in_background() -> None:
    """Start building the venv on a thread, so that it is ready when the first MLflow test needs it
    (that test waits on the build's lock). A failed build is tried again, and fails, in that test."""
    if not os.environ.get("MLFLOW_PYTHON") and not (VENV / ".complete").exists():
        threading.Thread(target=mlflow_python, name="mlflow-venv", daemon=True).start()


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {timeout}s:\n{log.read_text()[-3000:]}")


class MlflowStack:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.python = mlflow_python()
        self.procs: list[subprocess.Popen] = []
        # mlflow starts helpers (uvicorn, gunicorn) by name: its venv's bin goes first on PATH.
        path = f"{self.python.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "MLFLOW_TRACKING_URI": "", "PYTHONUNBUFFERED": "1", "PATH": path}

    def _spawn(self, args: list[str], name: str, env: dict | None = None) -> tuple[subprocess.Popen, Path]:
        log = self.workdir / f"{name}.log"
        proc = subprocess.Popen([str(self.python), "-m", "mlflow", *args], cwd=self.workdir, env=env or self.env,
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115
        self.procs.append(proc)
        return proc, log

    def start_tracking(self) -> str:
        port = free_port()
        proc, log = self._spawn(["server", "--backend-store-uri", f"sqlite:///{self.workdir}/mlflow.db",
                                 "--artifacts-destination", str(self.workdir / "artifacts"), "--host", "127.0.0.1",
                                 "--port", str(port), "--workers", "1"], "tracking")
        self.tracking_url = f"http://127.0.0.1:{port}"
        _wait(f"{self.tracking_url}/health", proc, log)
        return self.tracking_url

    def register_model(self, name: str) -> str:
        script = self.workdir / "log_model.py"
        script.write_text(MODEL_SCRIPT)
        out = subprocess.run([str(self.python), str(script), self.tracking_url, name], cwd=self.workdir,
                             env=self.env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("MODEL_VERSION"))

    def serve(self, name: str, version: str) -> str:
        port = free_port()
        env = {**self.env, "MLFLOW_TRACKING_URI": self.tracking_url}
        proc, log = self._spawn(["models", "serve", "-m", f"models:/{name}/{version}", "--env-manager", "local",
                                 "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], "scoring", env)
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/ping", proc, log, timeout=180)
        return url

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
