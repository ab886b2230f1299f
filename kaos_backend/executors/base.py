"""The executor contract (after JupyterHub's Spawner): how the scheduler runs one workload anywhere.

A *workload* is one build, training, endpoint or notebook, described by a `WorkloadSpec`. An executor
instance drives exactly one workload:

    executor = make_executor(config)          # an idle executor of the configured kind
    image = executor.build(spec, bundle_dir)  # for a build workload: start it, return the image it makes
    address = executor.start(spec)            # train / serve / notebook: returns once started; an Address for
                                              # serve / notebook (where it listens), else None
    executor.poll()                           # None while running, else the exit code (like Popen.poll)
    executor.reason()                         # how it ended, in words (None while running)
    executor.stop(now=False)                  # signal, wait with a timeout, kill; gone is not an error
    executor.logs(follow=False)               # the job's log records
    state = executor.get_state()              # JSON-able; stored on the row
    executor = make_executor(config); executor.load_state(state)   # after a backend restart: reattach
    executor.clear_state()                    # forget the ended workload: idle again, get_state() == {}

Rules every executor keeps (and the shared contract test checks):
- `start`/`build` return quickly; the workload runs on without the backend process, so a backend restart
  loses nothing.
- `poll` on a workload that vanished (its process, container or pod is gone with no exit code) returns
  `VANISHED`, a non-zero code: a vanished workload counts as finished, never as running forever.
- `stop` ends the whole workload (every process it started, including those that left its session or
  daemonized) and may be called on a finished one; a workload ends when its main process exits, and whatever
  it left running is stopped then.
- `reason` says how a finished workload ended: "exit code N", "killed by signal N (NAME)", "out of memory (limit
  X)", "killed on request", or that it vanished.
- The log is a file of `[YYYY-MM-DD HH:MM:SS] line` records written by the workload's side, not by the
  backend, so it survives the backend.
"""
import abc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

VANISHED = 255  # the exit code reported for a workload that disappeared without one


@dataclass(frozen=True)
class Address:
    """Where a serve or notebook workload accepts connections, as `start` returns it and its row stores it: a
    TCP `host` and `port` (the workload listens on the `PORT` it is given), and/or a unix `socket` path on the
    backend's machine that it was offered (`KAOS_SOCKET`) besides. Whoever connects uses the socket only once the
    file exists (the workload may ignore the offer), else host and port; nothing assumes a host."""
    host: Optional[str] = None
    port: Optional[int] = None
    socket: Optional[str] = None


@dataclass
class WorkloadSpec:
    """Everything an executor needs to run one workload. Paths are absolute."""
    job_id: str
    kind: str                      # "build" | "train" | "serve" | "notebook"
    command: List[str]             # argv, run in `workdir`
    workdir: str
    log_path: str
    image: Optional[str] = None    # what a build produced: a virtualenv dir (local) or an image (docker)
    env: Dict[str, str] = field(default_factory=dict)
    preamble: List[str] = field(default_factory=list)  # log records written before the command runs
    requirements: List[str] = field(default_factory=list)  # build: requirements files, in order
    inputs: List[str] = field(default_factory=list)   # paths the workload reads (data, hyperparameters, ...)
    outputs: List[str] = field(default_factory=list)  # paths it writes besides `workdir` (its output directory)
    hints: List[str] = field(default_factory=list)    # log records about its inputs, written before it runs
    cpu: Optional[float] = None
    memory: Optional[str] = None
    gpu: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "WorkloadSpec":
        return cls(**data)


class Executor(abc.ABC):
    """One workload on one kind of infrastructure. See the module docstring for the contract."""

    kind = "abstract"

    @abc.abstractmethod
    def build(self, spec: WorkloadSpec, bundle_dir: Path) -> str:
        """Start building the environment for the bundle in `bundle_dir`; return the image reference the
        build produces (usable in a later `WorkloadSpec.image`). Progress and errors go to the log."""

    @abc.abstractmethod
    def start(self, spec: WorkloadSpec) -> Optional[Address]:
        """Start the workload; return once it is started (not finished). A serve or notebook workload: where it
        will listen (it may not accept connections yet: readiness is the caller's to probe); others: None."""

    @abc.abstractmethod
    def poll(self) -> Optional[int]:
        """None while the workload runs, else its exit code (`VANISHED` if it disappeared)."""

    def reason(self) -> Optional[str]:
        """How the finished workload ended, in words; None while it runs."""
        return None

    @abc.abstractmethod
    def stop(self, now: bool = False, timeout: float = 10.0) -> None:
        """End the workload: politely, then by force after `timeout` seconds (at once when `now`)."""

    @abc.abstractmethod
    def get_state(self) -> dict:
        """What `load_state` needs to find the workload again, as a JSON-able dict."""

    @abc.abstractmethod
    def load_state(self, state: dict) -> None:
        """Reattach to the workload described by `state` (from `get_state`, possibly another process)."""

    @abc.abstractmethod
    def clear_state(self) -> None:
        """Forget the workload (once it ended, or was stopped): the executor is idle again, as a new one, and
        `get_state()` is `{}`. Nothing is stopped or removed: that is `stop`'s."""

    @classmethod
    def limits_warnings(cls, config, cpu: Optional[float], memory: Optional[str], gpu: Optional[int]) -> List[str]:
        """What of the requested resources this kind of executor, configured by `config`, would record but not
        enforce, one sentence each (empty when it enforces them all). Asked before any workload exists."""
        return []

    @abc.abstractmethod
    def image_for(self, spec: WorkloadSpec) -> str:
        """The image reference a build of `spec` makes (without building anything)."""

    def is_image_ready(self, image: str) -> bool:
        """True when `image` exists already, so a build of it can be skipped (a warm build)."""
        return False

    def logs(self, follow: bool = False) -> Iterator[str]:
        """The workload's log records; with `follow`, new ones until the workload ends."""
        from kaos_backend.logs import JobLog
        log = JobLog(self.get_state()["log_path"])
        if not follow:
            return iter(log.lines())
        return log.follow(lambda: self.poll() is not None)
