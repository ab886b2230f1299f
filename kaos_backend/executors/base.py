"""The executor contract (after JupyterHub's Spawner): how the scheduler runs one workload anywhere.

A *workload* is one build, training, endpoint or notebook, described by a `WorkloadSpec`. An executor
instance drives exactly one workload:

    executor = make_executor(config)          # an idle executor of the kind KAOS_EXECUTOR names (registry.py)
    image = executor.build(spec)              # for a build workload: start it, return the image it makes
    address = executor.start(spec)            # train / serve / notebook: returns once started; an Address for
                                              # serve / notebook (where it listens), else None
    executor.poll()                           # None while running, else the exit code (like Popen.poll)
    executor.reason()                         # how it ended, in words (None while running)
    executor.standing()                       # while it runs: what it waits for, how often it was replaced (or None)
    executor.stop(now=False)                  # signal, wait with a timeout, kill; gone is not an error
    executor.logs(follow=False)               # its log's records; the ONLY way anything reads a log
    state = executor.get_state()              # JSON-able; stored on the row
    executor = make_executor(config); executor.load_state(state)   # after a backend restart: reattach
    executor.clear_state()                    # forget the ended workload: idle again, get_state() == {}
    log = make_executor(config).bind_log(job_log_name(job_id))   # a job's log, with or without a workload:
    log.logs(follow=True, until=...); log.open_log(); log.append_log("kaos: ...")   # read it, or add to it

Rules every executor keeps (and the shared contract test checks):
- `start`/`build` return quickly; the workload runs on without the backend process, so a backend restart
  loses nothing.
- `poll` on a workload that vanished (its process, container or pod is gone with no exit code) returns
  `VANISHED`, a non-zero code: a vanished workload counts as finished, never as running forever.
- `stop` ends the whole workload (every process it started, including those that left its session or
  daemonized) and may be called on a finished one; a workload ends when its main process exits, and whatever
  it left running is stopped then.
- `reason` says how a finished workload ended: "exit code N", "killed by signal N (NAME)", "out of memory (limit
  X)", "killed on request", or that it vanished; the workload's log ends with "kaos: the <training> ended: "
  and that reason.
- A spec names artifacts, never paths (`WorkloadSpec`): the executor stages them (`start` raises ArtifactMissing
  for one the platform does not have, and starts nothing), and delivers a training's output to the platform's
  store (kaos_backend.layout.DataLayout.output_dir) by the time `poll` reports its end.
- A workload writes to the log its spec names (`WorkloadSpec.log`: a job's, "jobs/<job id>", or an
  endpoint's, "endpoints/<name>": a name, never a path; the workloads of one job share its log, and the
  platform adds its own records with `append_log`). A log is `[YYYY-MM-DD HH:MM:SS] line` records, kept where
  the executor keeps them, written by the workload's side (not by the backend), so it survives the backend.
  Readers go through the executor: `logs()` for records, `open_log()` for its bytes without blocking (what the
  front's event loop polls); no one else opens a log's file.
"""
import abc
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Protocol, Tuple

VANISHED = 255  # the exit code reported for a workload that disappeared without one
LOG_NAME_RE = re.compile(r"^(jobs|endpoints|notebooks)/[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def job_log_name(job_id: str) -> str:
    """The name of a job's log (a build's, an ingestion's, or a training's whose partitions all write to it)."""
    return f"jobs/{job_id}"


def endpoint_log_name(name: str) -> str:
    """The name of an endpoint's log (every start of it writes to it)."""
    return f"endpoints/{name}"


def notebook_log_name(name: str) -> str:
    """The name of a notebook's log (every start of it writes to it; a kill removes it, not its work directory)."""
    return f"notebooks/{name}"


def check_log_name(log: str) -> str:
    """`log` when it is a log's name (`job_log_name`, `endpoint_log_name`, `notebook_log_name`); ValueError
    otherwise."""
    if not isinstance(log, str) or not LOG_NAME_RE.match(log):
        raise ValueError(f"not a log's name: {log!r}")
    return log


class LogReader(Protocol):
    """A log's bytes from its start, as `Executor.open_log` gives them."""

    def read(self, size: int) -> bytes:
        """The next bytes, at most `size`; b"" when there is nothing new yet (or no log yet). Never blocks.
        OSError when the log cannot be read."""

    def close(self) -> None:
        """Release what reading held (a file); nothing more is read."""


@dataclass(frozen=True)
class Address:
    """Where a serve or notebook workload accepts connections, as `start` returns it and its row stores it: a
    TCP `host` and `port` (the workload listens on the `PORT` it is given), and/or a unix `socket` path on the
    backend's machine that it was offered (`KAOS_SOCKET`) besides. Whoever connects uses the socket only once the
    file exists (the workload may ignore the offer), else host and port; nothing assumes a host."""
    host: Optional[str] = None
    port: Optional[int] = None
    socket: Optional[str] = None


@dataclass(frozen=True)
class Artifact:
    """Something a workload reads or writes, named in the platform's store: never a path. Each executor stages
    it its own way (a directory of this machine, a read-only mount at /pfs/..., a download by the workload)."""
    BUNDLE = "bundle"      # an uploaded zip (a source or data bundle): `ref` its sha256, `root` its top directory
    MANIFEST = "manifest"  # an uploaded data manifest's bytes: `ref` its sha256
    INGESTED = "ingested"  # the files an ingestion downloaded for a manifest: `ref` the manifest's sha256
    OUTPUT = "output"      # a training's output directory: `ref` "<job id>/<hex6>"

    kind: str
    ref: str
    root: str = ""
    name: str = ""         # as users see it ("features:9fd9d", "manifest:1a2b3"); where containers mount it

    @classmethod
    def output_of(cls, job_id: str, hex6: str) -> "Artifact":
        return cls(cls.OUTPUT, f"{job_id}/{hex6}", name=hex6)

    def output_parts(self) -> Tuple[str, str]:
        """(job id, hex6) of an OUTPUT artifact."""
        job_id, _, hex6 = self.ref.partition("/")
        return job_id, hex6


@dataclass
class Hyperparameters:
    """One combination of a training's hyperparameters: `values` as JSON in the file `file` (relative:
    "<hash5>/<k=v_...>.json") of the directory the training reads them from (KAOS_TRAIN_HYPER, /pfs/hyper)."""
    file: str
    values: Dict[str, Any]


class Capacity(NamedTuple):
    """What one workload can be given at most (`Executor.capacity`); None: not known."""
    cpu: Optional[float] = None        # cores
    memory_gi: Optional[float] = None  # GiB
    gpu: Optional[int] = None          # 0: no GPUs at all
    # each machine's own (cpu, memory_gi, gpu), None where not known, when the workloads run on several: one
    # workload runs on one of them, so a request must fit one whole (the largest of each alone is not enough)
    nodes: Tuple[Tuple[Optional[float], Optional[float], Optional[int]], ...] = ()


class Standing(NamedTuple):
    """How a running workload is doing besides running (`Executor.standing`), for the platform's lists."""
    waiting: Optional[str] = None        # what keeps it from starting now, in words ("its pod cannot be scheduled:
    #                                      0/1 nodes are available: ..."); None when nothing does
    replaced: int = 0                    # how often the infrastructure replaced it since its start (a Deployment's
    #                                      pod evicted or deleted, and another made): a restart the platform did not do
    last_replaced: Optional[str] = None  # how the last one replaced ended ("evicted: The node was low on ...")


class ArtifactMissing(Exception):
    """An artifact a spec names is not in the platform's store (deleted, or never ingested): the workload cannot
    start. `where` says where it was looked for."""

    def __init__(self, artifact: Artifact, where: str):
        super().__init__(f"{artifact.name or artifact.ref} is not at {where}")
        self.artifact = artifact
        self.where = where


@dataclass
class WorkloadSpec:
    """One workload, by name only: what it reads and writes, the image it runs in, its log. Never a path of the
    backend's machine or its interpreter: each executor stages the artifacts, and knows what each kind runs:

        build      install `requirements` (file names in the source's model/, in order) into an image
        ingestion  download the files `data` (a MANIFEST) lists into `output` (INGESTED)
        train      `./train <where output is>` in a copy of the source's model/, with `data`, `hyperparameters`
                   and `output` where KAOS_TRAIN_DATA, KAOS_TRAIN_HYPER and KAOS_TRAIN_OUTPUT say
        serve      `./serve` in a copy of the source's model/ with `model`'s model/ files beside it; it listens
                   on $HOST:$PORT (and may on $KAOS_SOCKET)
        notebook   `jupyter lab` (notebook_command.py: `base_url`, `idle_timeout`, the token from `secrets`) in a
                   work directory of the notebook's own that outlives the workload (kept across kills and culls:
                   the next notebook of the same name gets it back), seeded with the source's model/ files it
                   does not hold yet; `attached` (data) read-only at /pfs/data/<name> (local: <work>/pfs/data/
                   <name>), `model` (a training's OUTPUT) read-only at /pfs/out/<hex6> (local: <work>/pfs/out/
                   <hex6>); KAOS_NOTEBOOK_DATA and KAOS_NOTEBOOK_MODEL say where. Kubernetes' spec builder reads
                   the same fields (kubernetes_notebook.py): `secrets` a Secret, `attached`/`model` fetched into
                   /pfs mounted read-only, `base_url` the gateway's path (kept: Jupyter serves under it), the work
                   directory a PersistentVolumeClaim

    The log starts with `preamble`, then the executor's own records around its staging ("starting to download
    data", "finished downloading data after <ms>ms", how it runs the workload, "beginning to run user code")."""
    job_id: str                    # the workload's name: a job id, "<job id>-<index>" (a partition), an endpoint
    kind: str                      # "build" | "ingestion" | "train" | "serve" | "notebook"
    log: str                       # the name of the log it writes to: job_log_name / endpoint_log_name
    preamble: List[str] = field(default_factory=list)  # the log's first records ("processing job <id>")
    source: Optional[Artifact] = None   # build, train, serve: a BUNDLE whose model/ is the code
    data: Optional[Artifact] = None     # train: a BUNDLE or INGESTED; ingestion: a MANIFEST
    hyperparameters: Optional[Hyperparameters] = None  # train: its combination, if the job has any
    output: Optional[Artifact] = None   # train: an OUTPUT; ingestion: INGESTED
    model: Optional[Artifact] = None    # serve, notebook: a training's OUTPUT
    attached: List[Artifact] = field(default_factory=list)  # notebook: data (BUNDLE or INGESTED), read-only
    requirements: List[str] = field(default_factory=list)  # build: requirements files of model/, in order
    image: Optional[str] = None    # what a build produced (local: a virtualenv; docker: an image)
    image_name: Optional[str] = None   # build: the name the platform gives its image ("build-train-<ws>:<hash5>"),
                                       # for executors whose images have names (docker); others ignore it
    env: Dict[str, str] = field(default_factory=dict)  # ids and names for the workload (KAOS_JOB_ID, ...)
    secrets: Dict[str, str] = field(default_factory=dict)  # environment whose values are secrets (a notebook's
                                       # JUPYTER_TOKEN): never logged, labelled or kept in the executor's state
    base_url: Optional[str] = None     # notebook: the path the gateway routes to it, kept ("/notebook-<ws>-<u>/")
    idle_timeout: Optional[float] = None  # notebook: seconds without activity before it stops itself (0: never)
    cpu: Optional[float] = None
    memory: Optional[str] = None
    gpu: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "WorkloadSpec":
        data = dict(data)
        for name in ("source", "data", "output", "model"):
            if data.get(name) is not None:
                data[name] = Artifact(**data[name])
        data["attached"] = [Artifact(**item) for item in data.get("attached") or []]
        if data.get("hyperparameters") is not None:
            data["hyperparameters"] = Hyperparameters(**data["hyperparameters"])
        return cls(**data)


class Executor(abc.ABC):
    """One workload on one kind of infrastructure. See the module docstring for the contract."""

    kind = "abstract"
    log_name: Optional[str] = None   # the log this executor reads and appends to (bind_log, start, load_state)
    engine_name: Optional[str] = None  # what its workloads run on, as reasons name it ("the Docker engine"): None
    #                                    when there is nothing to reach (the local executor)

    @abc.abstractmethod
    def build(self, spec: WorkloadSpec) -> str:
        """Start building the image of `spec.source` (a build spec); return the image reference the build
        produces (usable in a later `WorkloadSpec.image`). Progress and errors go to the log. Raises
        ArtifactMissing, and InvalidBundle / PayloadTooLarge (kaos_backend.errors) for a stored bundle that
        cannot be unpacked."""

    @abc.abstractmethod
    def start(self, spec: WorkloadSpec) -> Optional[Address]:
        """Stage the spec's artifacts and start the workload; return once it is started (not finished). A serve
        or notebook workload: where it will listen (it may not accept connections yet: readiness is the caller's
        to probe); others: None. Raises as `build`."""

    @abc.abstractmethod
    def poll(self) -> Optional[int]:
        """None while the workload runs, else its exit code (`VANISHED` if it disappeared)."""

    def reason(self) -> Optional[str]:
        """How the finished workload ended, in words; None while it runs."""
        return None

    def standing(self) -> Optional[Standing]:
        """While the workload runs, what its infrastructure says of it besides running (`Standing`: what it waits
        for, how often it was replaced and how the last one ended); None when there is nothing to say, or the
        executor does not know (the local and docker executors: their workload's process is the whole of it).
        Cheap (no request to the infrastructure: what the executor follows already); never raises."""
        return None

    @abc.abstractmethod
    def stop(self, now: bool = False, timeout: float = 10.0) -> None:
        """End the workload: politely, then by force after `timeout` seconds (at once when `now`)."""

    def remove_unrecorded(self, log: str, workloads: List[str]) -> None:
        """Remove what starts of `workloads` (their WorkloadSpec.job_id; their log named `log`) left running, or
        ended, that no row records: a start the infrastructure carried out but whose answer never came (timed out,
        its connection closed) leaves its workload for the next start to adopt; a kill (or a give-up) of a
        workload that has no state yet finds it so. Nothing there is not an error. Default: nothing (a start of
        this executor is no request left unanswered)."""
        return None

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
    def capacity(cls, config) -> Optional["Capacity"]:
        """The most one workload can be given where this kind of executor, configured by `config`, runs, read live
        (on Kubernetes: the largest allocatable cpu, memory and GPUs of a node), or None when it is not known.
        Requests are checked against it (kaos_backend.resources, reference §6.13) where no KAOS_MAX_* is set.
        Asked before any workload exists; never raises."""
        return None

    @classmethod
    def remove_notebook_work(cls, config, workspace: Optional[str]) -> bool:
        """Remove the work directories this kind of executor keeps outside the data directory for the notebooks of
        `workspace` (of every workspace when None), killed ones included (on Kubernetes: their
        PersistentVolumeClaims), once the workspace is gone; False when some could not be removed. Those under
        the data directory go with DataLayout.remove_notebook_work. Never raises."""
        return True

    @classmethod
    def limits_warnings(cls, config, cpu: Optional[float], memory: Optional[str], gpu: Optional[int]) -> List[str]:
        """What of the requested resources this kind of executor, configured by `config`, would record but not
        enforce, one sentence each (empty when it enforces them all). Asked before any workload exists."""
        return []

    @classmethod
    def engine_problem(cls, config) -> Optional[str]:
        """Why `engine_name` does not answer, in one line (e.g. where it was asked and what the connection met);
        None while it answers, or when there is no engine. The scheduler asks about once a second, and holds the
        workloads while the answer is not None (kaos_backend/control/engine_watch.py). Never raises; answers
        within a few seconds."""
        return None

    @abc.abstractmethod
    def image_for(self, spec: WorkloadSpec) -> str:
        """The image reference a build of `spec` makes (without building anything). Raises as `build`."""

    def is_image_ready(self, image: str) -> bool:
        """True when `image` exists already, so a build of it can be skipped (a warm build)."""
        return False

    def build_notes(self, spec: "WorkloadSpec") -> List[str]:
        """Lines for a build's log about what this platform makes of the bundle differently from `docker build`
        (LOCAL: the Dockerfile's instructions it does not apply), cold or warm build alike; none by default."""
        return []

    # -- the log ---------------------------------------------------------------------------------------------
    def bind_log(self, log: str) -> "Executor":
        """Point this executor at the log named `log` (`job_log_name`, `endpoint_log_name`) to read or add to
        it, with or without a workload at hand (a job that never started, an endpoint between two starts).
        Returns self. ValueError when `log` is not a log's name. `start` and `load_state` bind the workload's."""
        self.log_name = check_log_name(log)
        return self

    @abc.abstractmethod
    def open_log(self) -> LogReader:
        """The bound log's bytes from its start, read without blocking: what `logs` is made of, and what a reader
        that must not block (the front's event loop) polls itself."""

    @abc.abstractmethod
    def append_log(self, *texts: str) -> None:
        """Add records of the platform's own to the bound log (why a job failed before it started, that it was
        killed), each line of each text one timestamped record."""

    def logs(self, follow: bool = False, until: Optional[Callable[[], bool]] = None) -> Iterator[str]:
        """The bound log's records (`[YYYY-MM-DD HH:MM:SS] text`, without newlines). With `follow`, new ones as
        they come until `until()` is true (default: this executor's workload has ended) and the log is drained."""
        from kaos_backend.logs import records
        finished = until or (lambda: self.poll() is not None)
        return records(self.open_log(), follow=follow, finished=finished)
