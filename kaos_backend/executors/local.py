"""The embedded default: workloads are local processes, images are virtualenvs keyed by requirements.

A spec's artifacts are staged as directories of this machine (local_staging.py: the bundles as extracted, the
hyperparameters file, the output directory in the platform's layout), then the workload runs under `runner.py`
in a session of its own, so it outlives the backend. The runner holds the workload's processes in a containment
group (a cgroup of its own where the machine allows it, `containment.py`) with the requested memory and cpu as
limits, and, when the backend runs as root, runs it as the unprivileged workload user in a view of the files that
shows it only what it needs (`sandbox.py`). Logs are files under the data directory (`<data>/jobs/<job id>/log`,
`<data>/endpoints/<name>/log`). The executor's state is the runner's pid (with its start time, so a recycled pid is
never mistaken for it), the log, the exit-record path and the group; stopping signals the whole group, escalating
to SIGKILL. `start` and `build` are keyed by the workload's job id (local_claim.py): a second start of a workload
whose first start was never recorded (its scheduler was killed in between) finds the first instead of running it
again.
"""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional

from kaos_backend.config import platform_id
from kaos_backend.executors import containment, dockerfile_notes, outcome, sandbox, sockets, venv_builder
from kaos_backend.executors.base import VANISHED, Address, Executor, WorkloadSpec, check_log_name
from kaos_backend.executors.data_dir_log import DataDirLog
from kaos_backend.executors.local_claim import StartClaim
from kaos_backend.executors.local_process import (RUNNER_ENV_NAMES, SYSTEM_PATH, ProcessSpec, is_running,
                                                  job_environment, python_paths, start_ticks)
from kaos_backend.executors.local_staging import Staging
from kaos_backend.executors.notebook_command import listen_arguments
from kaos_backend.executors.registry import register
from kaos_backend.layout import DataLayout

VENV_BUILDER = str(Path(__file__).with_name("venv_builder.py"))
PACKAGE_DIR = str(Path(__file__).resolve().parents[1])  # kaos_backend/: the runner, builder and ingestion scripts
WHAT = {"build": "build", "train": "training", "serve": "endpoint", "ingestion": "ingestion", "notebook": "notebook"}
STOP_RECORD_WAIT = 5.0
LISTENING_KINDS = ("serve", "notebook")


class LocalExecutor(DataDirLog, Executor):
    kind = "local"

    def __init__(self, data_dir, host: str = "127.0.0.1", containment_mode: str = "auto",
                 workload_user: str = sandbox.DEFAULT_USER, drain_seconds: float = 2.0,
                 notify: Optional[str] = None, max_log_bytes: Optional[int] = None,
                 max_bundle_bytes: Optional[int] = None):
        self.data_dir = Path(data_dir)
        self.envs_dir = DataLayout(self.data_dir).envs_dir
        self.staging = Staging(self.data_dir, max_bundle_bytes)
        self.host = host
        self.containment_mode = containment_mode
        self.workload_user = workload_user
        self.drain_seconds = drain_seconds
        self.notify = notify
        self.max_log_bytes = max_log_bytes
        self._state: Optional[dict] = None
        self._process: Optional[subprocess.Popen] = None  # set while this process is the runner's parent

    @classmethod
    def from_config(cls, config) -> "LocalExecutor":
        """An idle local executor of the backend configured by `config` (kaos_backend.config.Config)."""
        from kaos_backend.wakeup import socket_name
        return cls(config.data_dir, containment_mode=config.containment, workload_user=config.workload_user,
                   notify=socket_name(config.data_dir), max_log_bytes=config.max_log_mb * 1024 * 1024,
                   max_bundle_bytes=config.max_bundle_bytes)

    @classmethod
    def limits_warnings(cls, config, cpu: Optional[float], memory: Optional[str], gpu: Optional[int]) -> List[str]:
        warnings = []
        if memory is not None or cpu is not None:
            problem = containment.limits_problem(config.containment, platform_id(config.data_dir))
            if problem:
                warnings.append(f"--memory and --cpu are recorded but not enforced: {problem}")
        if gpu:
            warnings.append("--gpu is recorded only: the local executor does not assign GPUs")
        return warnings

    # -- building -------------------------------------------------------------------------------------------
    def image_for(self, spec: WorkloadSpec) -> str:
        """The environment of the source's `spec.requirements`: shared by every bundle whose requirements have the
        same bytes, unless they name the bundle's own files (then the content of its model directory is part of
        the key)."""
        model = self.staging.model_dir(spec.source)
        texts = [(model / name).read_bytes() if (model / name).is_file() else b"" for name in spec.requirements]
        if any(venv_builder.refers_to_local_files(text) for text in texts):
            texts.append(venv_builder.tree_digest(model).encode())
        return str(venv_builder.environment_dir(self.envs_dir, venv_builder.requirements_key(texts)))

    def is_image_ready(self, image: str) -> bool:
        return (Path(image) / venv_builder.COMPLETE_MARKER).exists()

    def build(self, spec: WorkloadSpec) -> str:
        """Start building the virtualenv of the source's `spec.requirements` in a copy of its model/ (building a
        local package writes into it). The build may write its own environment's directory and lock file and
        nothing else of the envs directory (when sandboxed). The scheduler never runs two builds of one
        environment at once (see control/builds.py)."""
        image = self.image_for(spec)
        with self._claim(spec) as claim:
            if claim.adopted:
                self._adopt(spec, claim.adopted)
                return image
            process = self.staging.stage(spec, self._log_file(spec.log).parent)
            process.preamble = process.preamble + self.build_notes(spec)
            target, lock = Path(image), Path(f"{image}.lock")
            self.envs_dir.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)  # whatever an earlier, failed or killed build left
            target.mkdir()
            lock.touch()
            requirements = [str(Path(process.workdir) / name) for name in spec.requirements]
            self.launch(replace(process, image=None, outputs=[str(target), str(lock)],
                                command=[sys.executable, VENV_BUILDER, "--envs-dir", str(self.envs_dir),
                                         "--key", target.name, *requirements]), claim)
        return image

    def build_notes(self, spec: WorkloadSpec) -> List[str]:
        """The Dockerfile's instructions a virtualenv does not apply (dockerfile_notes.py), in one line."""
        return dockerfile_notes.note(self.staging.bundle_root(spec.source) / "Dockerfile")

    # -- running --------------------------------------------------------------------------------------------
    def start(self, spec: WorkloadSpec) -> Optional[Address]:
        """Stage the workload's artifacts (local_staging.py) and start it (`launch`); or, when a start of it is
        found (local_claim.py), take that one's state and address."""
        with self._claim(spec) as claim:
            if claim.adopted:
                return self._adopt(spec, claim.adopted)
            return self.launch(self.staging.stage(spec, self._log_file(spec.log).parent), claim)

    def _claim(self, spec: WorkloadSpec) -> StartClaim:
        return StartClaim(self._log_file(spec.log).parent, spec.job_id, restartable=spec.kind in LISTENING_KINDS)

    def _adopt(self, spec: WorkloadSpec, adopted) -> Optional[Address]:
        state, pid, ticks = adopted
        self.load_state(_with_runner(state, pid, ticks))
        self.log_name = spec.log
        return Address(self.host, state["port"], state.get("socket")) if state.get("port") is not None else None

    def launch(self, process: ProcessSpec, claim: Optional[StartClaim] = None) -> Optional[Address]:
        """Start the staged workload `process` under its runner. A serve or notebook workload gets a free port of
        the loopback interface in `PORT` and that interface in `HOST` and, a serve workload, where a socket path
        can be made for it (sockets.py), `KAOS_SOCKET`: a unix socket path it may listen on too. Its address is
        returned (None for other kinds)."""
        extra = dict(process.env)
        socket = port = None
        if process.kind in LISTENING_KINDS:
            port = sockets.free_port(self.host)
            extra["PORT"] = str(port)
            extra.setdefault("HOST", self.host)  # listen on loopback only: the gateway is the way in
        if process.kind == "notebook":
            process = replace(process, command=process.command + listen_arguments(self.host, port))
        if process.kind == "serve":
            socket = sockets.prepare(sockets.socket_path(platform_id(self.data_dir), process.job_id,
                                                         secrets.token_hex(8)))
            if socket is not None:
                extra[sockets.SOCKET_VARIABLE] = str(socket)
        self._launch(process, job_environment(extra, process.image), str(socket) if socket else None, port, claim)
        return Address(self.host, port, str(socket) if socket else None) if port is not None else None

    def _limits(self, spec: ProcessSpec) -> containment.Limits:
        from kaos_backend.resources import memory_to_bytes
        memory_bytes = memory_to_bytes(spec.memory) if spec.memory else None
        return containment.Limits(memory_bytes, spec.memory if memory_bytes else None, spec.cpu or None)

    def _sandbox(self, spec: ProcessSpec, env: Dict[str, str], socket: Optional[str] = None) -> Optional[dict]:
        """What the runner needs to sandbox the workload (None unless the backend is root and the workload user is
        another): what to hide, what it reads and writes, its private home and /tmp (made afresh here)."""
        if not sandbox.is_root() or self.workload_user in ("", "root"):
            return None
        scratch = self._log_file(spec.log).parent / "sandbox" / spec.job_id
        shutil.rmtree(scratch, ignore_errors=True)
        home, tmp = scratch / "home", scratch / "tmp"
        home.mkdir(parents=True)
        tmp.mkdir()
        writable = [spec.workdir] if spec.workdir not in spec.inputs else []
        writable += list(spec.outputs) + [str(home), str(tmp)] + ([str(Path(socket).parent)] if socket else [])
        readable = list(spec.inputs) + ([spec.image] if spec.image else []) + python_paths() + [PACKAGE_DIR]
        env.update(HOME=str(home), TMPDIR="/tmp", USER=self.workload_user, LOGNAME=self.workload_user,
                   PATH=(f"{spec.image}/bin:" if spec.image else "") + SYSTEM_PATH)  # the backend's PATH is its own
        return {"user": self.workload_user, "hide": [str(self.data_dir)], "writable": writable,
                "readable": readable, "tmp": str(tmp), "seal": list(spec.outputs)}

    def _launch(self, spec: ProcessSpec, env: Dict[str, str], socket: Optional[str] = None,
                port: Optional[int] = None, claim: Optional[StartClaim] = None) -> None:
        log_path = self._log_file(spec.log)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        exit_path = log_path.with_name(f"{spec.job_id}.exit")  # several workloads may share one log
        exit_path.unlink(missing_ok=True)
        name = f"{spec.job_id}-{secrets.token_hex(3)}"
        group = containment.create_group(self.containment_mode, platform_id(self.data_dir), name, self._limits(spec))
        env[containment.MARKER_VARIABLE] = name
        env[containment.PLATFORM_VARIABLE] = platform_id(self.data_dir)
        notes = [f"kaos: the {WHAT.get(spec.kind, spec.kind)} is {group.describe()}"] + list(spec.hints)
        runner_spec = {"log": str(log_path), "exit_file": str(exit_path), "command": list(spec.command),
                       "cwd": spec.workdir, "env": env, "what": WHAT.get(spec.kind, spec.kind),
                       "preamble": list(spec.preamble), "notes": notes, "group": group.to_state(),
                       "drain_seconds": self.drain_seconds, "max_log_bytes": self.max_log_bytes,
                       "sandbox": self._sandbox(spec, env, socket),
                       "remove_at_end": [str(Path(socket).parent)] if socket else [],
                       "notify": self.notify, "pid_file": str(claim.pid_path) if claim else None}
        spec_path = log_path.with_name(f"{spec.job_id}.runner.json")
        spec_path.unlink(missing_ok=True)
        with open(os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
            json.dump(runner_spec, handle)  # private: the environment may hold a secret (a notebook's token)
        state = {"log": spec.log, "log_path": str(log_path), "exit_path": str(exit_path), "port": port,
                 "group": group.to_state(), **({"socket": socket} if socket else {})}
        if claim:
            claim.record_state(state)
        runner_env = {key: os.environ[key] for key in RUNNER_ENV_NAMES if key in os.environ}
        with open(log_path, "ab") as runner_errors:
            self._process = subprocess.Popen([sys.executable, "-m", "kaos_backend.executors.runner", str(spec_path)],
                                             cwd=str(log_path.parent), env=runner_env, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=runner_errors, start_new_session=True,
                                             pass_fds=(claim.fd,) if claim else ())
        ticks = start_ticks(self._process.pid)
        if claim:
            claim.record_pid(self._process.pid, ticks)
        self.log_name = spec.log
        self._state = _with_runner(state, self._process.pid, ticks)

    # -- observing ------------------------------------------------------------------------------------------
    def _record(self) -> Optional[dict]:
        return outcome.read_record(self._state["exit_path"])

    def _runner_alive(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return is_running(self._state["pid"], self._state["start_ticks"])

    def _group(self) -> Optional[containment.Group]:
        state = self._state.get("group")
        return containment.group_from_state(state) if state else None

    def poll(self) -> Optional[int]:
        """The exit code once the runner wrote its record; None while it runs; VANISHED when the runner is gone
        without a record (whatever the workload left running is stopped then)."""
        record = self._record()
        if record is None and self._runner_alive():
            return None
        record = record or self._record()  # it may have finished between the two looks
        if self._process is not None:
            self._process.poll()  # reap
        if record is not None:
            return record["code"]
        self._stop_group()
        sockets.remove(self._state.get("socket"))  # the runner that would have removed it is gone
        return VANISHED

    def reason(self) -> Optional[str]:
        if self._state is None:
            return None
        record = self._record()
        if record is not None:
            return outcome.describe(record)
        return None if self._runner_alive() else outcome.VANISHED_REASON

    def stop(self, now: bool = False, timeout: float = 10.0) -> None:
        if self._state is None or self._record() is not None:
            return
        group = self._group()
        if self._runner_alive():
            os.kill(self._state["pid"], signal.SIGTERM)  # the runner passes it on and marks the end as requested
        elif group is not None:
            group.signal(signal.SIGTERM)
        if group is not None:
            deadline = time.monotonic() + (0 if now else timeout)
            while group.pids() and time.monotonic() < deadline and self._record() is None:
                time.sleep(0.05)
            group.kill()
        deadline = time.monotonic() + STOP_RECORD_WAIT
        while self._record() is None and self._runner_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._record() is None and not self._runner_alive():
            outcome.write_record(self._state["exit_path"], outcome.record_for(-signal.SIGKILL, requested=True))
            self._stop_group()
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        sockets.remove(self._state.get("socket"))  # the runner removes it too, unless it was killed

    def _stop_group(self) -> None:
        group = self._group()
        if group is not None:
            group.kill()
            group.remove()

    # -- state ----------------------------------------------------------------------------------------------
    def get_state(self) -> dict:
        return dict(self._state or {})

    def load_state(self, state: dict) -> None:
        self._state = dict(state)
        self._process = None
        self.log_name = state.get("log")  # None in the states of runners older than log names: log_path then

    def clear_state(self) -> None:
        self._state = None
        self._process = None
        self.log_name = None

    # -- the log: <data_dir>/jobs/<job id>/log, <data_dir>/endpoints/<name>/log ------------------------------
    def _log_file(self, log: Optional[str] = None) -> Path:
        """The file of the log named `log` (default: the bound one)."""
        log = log or self.log_name
        if log is None and self._state and self._state.get("log_path"):
            return Path(self._state["log_path"])
        if log is None:
            raise ValueError("no log is bound to this executor (bind_log, start or load_state first)")
        return self.data_dir / check_log_name(log) / "log"


register(LocalExecutor.kind, LocalExecutor, LocalExecutor.from_config)


def _with_runner(state: dict, pid: int, ticks: Optional[int]) -> dict:
    """A start's executor state (local_claim.py records it before its runner runs) with the runner's pid."""
    state = dict(state, pid=pid, start_ticks=ticks, group=dict(state["group"]))
    if state["group"]["kind"] == "subreaper":
        state["group"]["runner_pid"] = pid
    return state
