"""The embedded default: workloads are local processes, images are virtualenvs keyed by requirements.

Each workload runs under `runner.py` in a session of its own, so it outlives the backend; its state is the
runner's pid (with its start time, so a recycled pid is never mistaken for it), the log path and the exit
file the runner writes. Stopping signals every process of that session.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from kaos_backend.executors import venv_builder
from kaos_backend.executors.base import VANISHED, Executor, WorkloadSpec

RUNNER = str(Path(__file__).with_name("runner.py"))
VENV_BUILDER = str(Path(__file__).with_name("venv_builder.py"))

# Never handed to user code: the backend's own settings (its token among them) and its interpreter setup.
_PRIVATE_ENV_PREFIXES = ("KAOS_",)
_PRIVATE_ENV_NAMES = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}


def _stat_fields(pid: int) -> Optional[List[str]]:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after its closing parenthesis.
    return [text[:text.index(" ")]] + ["comm"] + text[text.rindex(")") + 2:].split()


def _start_ticks(pid: int) -> Optional[int]:
    fields = _stat_fields(pid)
    return int(fields[21]) if fields else None


def _session_members(session_id: int) -> List[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and int(fields[5]) == session_id and fields[2] != "Z":
                members.append(int(entry))
    return members


def _signal_all(session_id: int, signum: int) -> None:
    for pid in _session_members(session_id):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _wait_until_gone(session_id: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _session_members(session_id) and time.monotonic() < deadline:
        time.sleep(0.05)


def job_environment(extra: Dict[str, str], image: Optional[str]) -> Dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(_PRIVATE_ENV_PREFIXES) and key not in _PRIVATE_ENV_NAMES}
    if image:
        env["VIRTUAL_ENV"] = image
        env["PATH"] = f"{image}/bin{os.pathsep}{env.get('PATH', os.defpath)}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class LocalExecutor(Executor):
    kind = "local"

    def __init__(self, envs_dir, host: str = "127.0.0.1"):
        self.envs_dir = Path(envs_dir)
        self.host = host
        self._state: Optional[dict] = None
        self._process: Optional[subprocess.Popen] = None  # set while this process is the runner's parent

    # -- building -------------------------------------------------------------------------------------------
    def image_for(self, spec: WorkloadSpec) -> str:
        texts = [Path(path).read_bytes() if Path(path).exists() else b"" for path in spec.requirements]
        return str(venv_builder.environment_dir(self.envs_dir, venv_builder.requirements_key(texts)))

    def is_image_ready(self, image: str) -> bool:
        return (Path(image) / venv_builder.COMPLETE_MARKER).exists()

    def build(self, spec: WorkloadSpec, bundle_dir: Path) -> str:
        image = self.image_for(spec)
        command = [sys.executable, VENV_BUILDER, "--envs-dir", str(self.envs_dir), "--key", Path(image).name,
                   *spec.requirements]
        self._launch(spec, command, job_environment(spec.env, None))
        return image

    # -- running --------------------------------------------------------------------------------------------
    def start(self, spec: WorkloadSpec) -> None:
        extra = dict(spec.env)
        if spec.port is not None:
            extra["PORT"] = str(spec.port)
            extra.setdefault("HOST", self.host)  # listen on loopback only: the gateway is the way in
        self._launch(spec, spec.command, job_environment(extra, spec.image))

    def _launch(self, spec: WorkloadSpec, command: List[str], env: Dict[str, str]) -> None:
        log_path = Path(spec.log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        exit_path = log_path.with_name(f"{spec.job_id}.exit")  # several workloads may share one log
        exit_path.unlink(missing_ok=True)
        runner = [sys.executable, RUNNER, "--log", str(log_path), "--exit-file", str(exit_path)]
        for line in spec.preamble:
            runner += ["--line", line]
        with open(log_path, "ab") as runner_errors:
            self._process = subprocess.Popen(runner + ["--", *command], cwd=spec.workdir, env=env,
                                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=runner_errors, start_new_session=True)
        self._state = {"pid": self._process.pid, "start_ticks": _start_ticks(self._process.pid),
                       "log_path": str(log_path), "exit_path": str(exit_path), "port": spec.port}

    def _exit_code(self) -> Optional[int]:
        try:
            return int(Path(self._state["exit_path"]).read_text().strip())
        except (OSError, ValueError):
            return None

    def _runner_alive(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        fields = _stat_fields(self._state["pid"])
        return bool(fields) and fields[2] != "Z" and int(fields[21]) == self._state["start_ticks"]

    def poll(self) -> Optional[int]:
        code = self._exit_code()
        if code is not None:
            if self._process is not None:
                self._process.poll()  # reap
            return code
        if self._runner_alive():
            return None
        code = self._exit_code()  # it may have finished between the two looks
        return VANISHED if code is None else code

    def stop(self, now: bool = False, timeout: float = 10.0) -> None:
        if self._state is None:
            return
        session = self._state["pid"]  # the runner leads its own session; every process of the job is in it
        if not now:
            _signal_all(session, signal.SIGTERM)
            _wait_until_gone(session, timeout)
        if _session_members(session):
            _signal_all(session, signal.SIGKILL)
            _wait_until_gone(session, 5.0)
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    # -- state ----------------------------------------------------------------------------------------------
    def get_state(self) -> dict:
        return dict(self._state or {})

    def load_state(self, state: dict) -> None:
        self._state = dict(state)
        self._process = None

    def address(self) -> Tuple[str, int]:
        return self.host, self._state["port"]
