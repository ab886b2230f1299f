"""A real kaos backend process on 127.0.0.1 for tests: `python -m kaos_backend serve` on a free port."""
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.ports import free_port  # noqa: F401 - tests import it from here too

TEST_TOKEN = "test-token"


class BackendProcess:
    """Starts, waits for and stops one backend; `url` is the CLI endpoint (`http://127.0.0.1:<port>/api/`).
    Replicas of one backend: several BackendProcess on one data directory with `env={"KAOS_DATABASE_URL": ...}`
    naming one PostgreSQL database (each logs to its own file)."""

    def __init__(self, data_dir: Path, token: str = TEST_TOKEN, env: dict = None, port: int = None):
        self.data_dir = Path(data_dir)
        self.token = token
        self.port = port or free_port()
        self.extra_env = env or {}
        self.process = None
        self.log_path = self.data_dir.parent / f"backend-{self.port}.log"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/api/"

    def start(self, timeout: float = 60.0, engine_down: bool = False) -> "BackendProcess":
        """Start it and wait until its health is ok (`engine_down`: or says that only the engine the workloads run
        on does not answer, as a backend whose cluster cannot be reached does). Raises RuntimeError."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, KAOS_TOKEN=self.token, **self.extra_env)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kaos_backend", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--data-dir", str(self.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"backend exited with {self.process.returncode}:\n{self.log()}")
            try:
                health = requests.get(self.url + "health", headers={"X-Token": self.token}, timeout=1)
                if health.ok or (engine_down and health.status_code == 503 and health.json()["part"] == "engine"):
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"backend did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig=None) -> None:
        """Stop the backend, then the job processes it left running (they outlive it by design)."""
        self._stop_backend(sig)
        from kaos_cli.local_platform import stop_workloads
        stop_workloads(self.data_dir)

    def kill(self) -> None:
        """SIGKILL the backend's process group (supervisor and parts), as a crash would; its workloads, in
        sessions of their own, go on."""
        import signal
        self._stop_backend(signal.SIGKILL)

    def _stop_backend(self, sig=None) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        import signal
        try:
            os.killpg(self.process.pid, sig or signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def get(self, path: str, **kwargs):
        return requests.get(self.url + path, headers={"X-Token": self.token}, **kwargs)
