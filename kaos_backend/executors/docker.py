"""The docker executor: builds are `docker build`s of the bundles' Dockerfiles, trainings and endpoints are
containers of the images they made, on the Docker engine of the backend's machine (DOCKER_HOST), through the
docker SDK. KAOS_EXECUTOR=docker chooses it.

    build    the bundle's Dockerfile with its model/ as the context, BASE_IMAGE from KAOS_BASE_IMAGE (else kaos's
             own base image when the engine has it), into `kaos-<platform>/build-train-<ws>:<hash5>` (or
             build-serve: WorkloadSpec.image_name under the platform's own name), labelled kaos's, the layer
             cache used; its output goes to the build job's log line by line as the engine sends it, and a
             failing step's line ("The command '/bin/sh -c ...' returned a non-zero code: 1") is the build's
             reason
    train    one container per partition, at kaos 1.x's paths (/pfs/data/<name:hash5>, /pfs/hyper, /pfs/out/<hex6>;
             docker_staging.py), --cpu/--memory/--gpu as its limits; the engine's OOMKilled is "out of memory"
    serve    a container listening on 8080, published on 127.0.0.1: `start` returns that address
    notebook a container of `jupyter lab` on 8888, published likewise, its work directory kept on this machine
    ingestion   a process on this machine, as the local executor runs it (it downloads into the data directory)

Each container or build has a watcher (docker_watcher.py), a process of its own session that outlives the backend:
it copies the engine's output into the log (a file, as the local executor's: `<data>/jobs/<job id>/log`,
`<data>/endpoints/<name>/log`), writes how the workload ended, removes the container and writes the exit record.
The executor's state is the container's id and its image (a build's: the image it makes), the watcher, and the
files beside the log (docker_watch.py). A backend restart finds the watcher still running; a watcher that died
while its container runs is started again (it resumes from the last line it wrote); a container gone without an
end is a vanished workload.
"""
import math
import signal
import time
from pathlib import Path
from typing import List, Optional

from kaos_backend.config import platform_id
from kaos_backend.executors import docker_client, docker_spec, outcome
from kaos_backend.executors.base import VANISHED, Address, Executor, WorkloadSpec, check_log_name
from kaos_backend.executors.data_dir_log import DataDirLog
from kaos_backend.executors.docker_bases import missing_base, missing_base_reason
from kaos_backend.executors.docker_containers import (RUNS, engine_words, existing_container, image_workdir,
                                                      remove_unrecorded, start_container)
from kaos_backend.executors.docker_staging import DockerStaging, StagedContainer
from kaos_backend.executors.docker_watch import WatchedWorkload
from kaos_backend.executors.docker_watcher import describe
from kaos_backend.executors.preamble import Preamble
from kaos_backend.executors.registry import register
from kaos_backend.images import labels

WHAT = {"build": "build", "train": "training", "serve": "endpoint", "notebook": "notebook"}
BUILD_KINDS = ("build-train", "build-serve", "build-notebook")
STOP_RECORD_WAIT = 15.0  # seconds for the watcher to record the end of a stopped workload before stop does it
MAX_RESPAWNS = 3         # watchers started again for one container before it counts as vanished
CONTAINER_GONE = ("vanished: its container is gone without an exit code (removed from the engine, or the engine "
                  "lost it)")
BUILD_GONE = "vanished: its build's watcher disappeared without an outcome (the machine restarted, or it was killed)"
WATCHER_FAILING = "vanished: its watcher kept failing (see the log); the container was removed"


class DockerExecutor(DataDirLog, Executor):
    kind = "docker"
    engine_name = "the Docker engine"

    def __init__(self, data_dir, base_image: str = "", notify: Optional[str] = None,
                 max_log_bytes: Optional[int] = None, max_bundle_bytes: Optional[int] = None, config=None):
        self.data_dir = Path(data_dir)
        self.platform = platform_id(self.data_dir)
        self.staging = DockerStaging(self.data_dir, max_bundle_bytes)
        self.base_image = base_image
        self.notify = notify
        self.max_log_bytes = max_log_bytes
        self.config = config
        self.push = False        # builds: push the image to its registry once built (the kubernetes executor's)
        self._workload: Optional[WatchedWorkload] = None  # the workload started or reattached
        self._delegate: Optional[Executor] = None          # the local executor an ingestion runs on

    @classmethod
    def from_config(cls, config) -> "DockerExecutor":
        """An idle docker executor of the backend configured by `config` (kaos_backend.config.Config)."""
        from kaos_backend.wakeup import socket_name
        return cls(config.data_dir, base_image=config.base_image, notify=socket_name(config.data_dir),
                   max_log_bytes=config.max_log_mb * 1024 * 1024, max_bundle_bytes=config.max_bundle_bytes,
                   config=config)

    @classmethod
    def limits_warnings(cls, config, cpu: Optional[float], memory: Optional[str], gpu: Optional[int]) -> List[str]:
        if not gpu and not cpu:
            return []
        try:
            info = docker_client.engine_info()
        except Exception:  # noqa: BLE001 - no engine to ask (in time): the start will say so
            return []
        warnings = []
        cpus = info.get("NCPU")
        if cpu and cpus and cpu > cpus:  # the engine refuses such a container at its start
            warnings.append(f"--cpu {cpu:g} is more than the {cpus} CPUs of the Docker engine: a workload asking for "
                            f"them fails to start")
        if gpu and "nvidia" not in (info.get("Runtimes") or {}):
            warnings.append("--gpu is asked of the Docker engine, which lists no nvidia runtime: a workload asking "
                            "for GPUs fails to start unless the engine has the NVIDIA container toolkit")
        return warnings

    @classmethod
    def engine_problem(cls, config) -> Optional[str]:
        return docker_client.engine_problem()

    # -- building -------------------------------------------------------------------------------------------
    def image_for(self, spec: WorkloadSpec) -> str:
        """`kaos-<platform>/<spec.image_name>` (kaos-<platform>/build-train-<ws>:<hash5>) on a DOCKER platform,
        `spec.image_name` as given when this executor builds for another one (kubernetes: the name carries its
        registry); else `kaos-build-<platform>:<hash5>`. Raises ArtifactMissing (and InvalidBundle,
        PayloadTooLarge) when the source cannot be built."""
        self.staging.bundle_root(spec.source)
        if spec.image_name:
            return self.engine_image(spec.image_name)
        name = spec.source.name
        return f"kaos-build-{self.platform}:{name.rpartition(':')[2] if ':' in name else spec.source.ref[:12]}"

    def engine_image(self, image_name: str) -> str:
        """The name an image gets on the engine. Two DOCKER platforms on one engine (two projects, a test suite
        beside a user's platform) each name theirs under `kaos-<platform>/`: neither's build takes the other's tag,
        nor its destroy the other's image. Users keep seeing kaos 1.x's `build-train-<ws>:<hash5>` (`kaos train
        info`, `kaos train deploy`'s inputs from `GET /train/<ws>/inspect`, `serve list` name the image so); build
        logs give the engine's name."""
        if self.config is not None and self.config.executor != self.kind:
            return image_name
        return f"kaos-{self.platform}/{image_name}"

    def is_image_ready(self, image: str) -> bool:
        """The engine has `image`, built by this platform (another platform's image of the same name is rebuilt:
        from the layer cache)."""
        try:
            found = docker_client.engine().images.get(image)
        except docker_client.errors().ImageNotFound:
            return False
        return (found.labels or {}).get(labels.PLATFORM) == self.platform

    def build(self, spec: WorkloadSpec) -> str:
        """Start `docker build` of the source bundle's Dockerfile with its model/ as the context, in a watcher
        (docker_watcher.py); the image it makes."""
        image = self.image_for(spec)
        home = self._home(spec.log)
        preamble = Preamble(spec.preamble)
        with preamble.downloading():
            root = self.staging.bundle_root(spec.source)
        base = docker_client.base_image(docker_client.engine(), self.base_image)
        kind = next((name for name in BUILD_KINDS if image.rpartition("/")[2].startswith(f"{name}-")), "build")
        arguments = docker_spec.build_arguments(
            context=str(root / "model"), dockerfile=str(root / "Dockerfile"), tag=image, base_image=base,
            image_labels=docker_spec.workload_labels(self.platform, kind, spec.job_id, spec.job_id))
        self._begin(spec, home, image)
        on = f", on {base}" if base else ", on the Dockerfile's own base image"
        self._write_preamble(preamble, [f"kaos: building the image {image} from the bundle's Dockerfile with its "
                                        f"model/ as the context{on}"])
        missing = missing_base(docker_client.engine(), root / "Dockerfile", arguments["buildargs"])
        if missing is not None:  # the engine would try to pull it (and fail with a registry's address, or hang)
            self._ended_at_once("build", missing_base_reason(missing), code=1)
            return image
        self._watch(spec, {"mode": "build", "build": arguments, "push": self.push})
        return image

    # -- running --------------------------------------------------------------------------------------------
    def start(self, spec: WorkloadSpec) -> Optional[Address]:
        """Stage the workload (docker_staging.py), create its container, copy its code in, start it, then its
        watcher. The container is named after the workload (docker_spec.container_name): a start made twice (the
        scheduler ended before it recorded the first; the engine carried out the first's start and its answer never
        came) follows the container the first one started, running or ended. A container
        the engine refuses (no such image, no GPU driver, a cpu limit over the machine's)
        ends at once, the engine's words as its reason. Raises ArtifactMissing, InvalidBundle, PayloadTooLarge."""
        if spec.kind == "ingestion":
            self._delegate = self._local()
            return self._delegate.start(spec)
        home = self._home(spec.log)
        name = docker_spec.container_name(self.platform, spec.job_id)
        client = docker_client.engine()
        started = existing_container(client, name, self.platform, spec.job_id,
                                     adopt_ended=not WatchedWorkload.ended_before(home, spec.job_id))
        if started is not None:
            return self._adopt(spec, home, started)
        preamble = Preamble(spec.preamble)
        container = refused = None
        with preamble.downloading():
            workdir = docker_spec.DEFAULT_WORKDIR
            if spec.kind == "notebook":  # its work directory is mounted where its image works
                try:
                    workdir = image_workdir(client.images.get(spec.image or ""))
                except docker_client.errors().APIError:
                    pass  # the container's creation says what is wrong with the image
            staged = self.staging.stage(spec, home, workdir)
            self._begin(spec, home, spec.image)
            try:
                container = start_container(client, spec, staged, name, self.platform)
            except docker_client.errors().APIError as error:
                refused = error
            finally:
                if staged.archive is not None:
                    staged.archive.close()
        if refused is not None:
            self._refused(spec, preamble, staged, refused)
            return None
        self._workload.state["container"] = container.id
        limits = ", ".join(part for part in (f"cpu {spec.cpu:g}" if spec.cpu else "",
                                             f"memory {spec.memory}" if spec.memory else "",
                                             f"gpu {spec.gpu}" if spec.gpu else "") if part)
        self._write_preamble(preamble, staged.notes + [
            f"kaos: the {WHAT[spec.kind]} runs in the container {name} of the image {spec.image}"
            + (f" (limits: {limits})" if limits else "")])
        self._watch(spec, {"mode": "container", "container": container.id})
        if staged.port is not None:
            port = docker_spec.published_port(container.attrs, staged.port)
            self._workload.state["port"] = port
            return Address(docker_spec.PUBLISH_HOST, port)
        return None

    def _adopt(self, spec: WorkloadSpec, home: Path, container) -> Optional[Address]:
        """Follow the workload's container that runs already, or ran (started before, its start never recorded),
        instead of starting a second one: its watcher copies its output and how it ended as for any container;
        where it listens, as `start` says it."""
        self._begin(spec, home, spec.image, fresh=False)
        self._workload.state["container"] = container.id
        runs = "runs" if container.status in RUNS else "ran"
        # No watcher was ever started for it (its start's answer was lost): the log has none of its records yet.
        first = [] if Path(self._workload.state["watch_path"]).exists() else spec.preamble
        self.append_log(*first, f"kaos: the {WHAT[spec.kind]} {runs} already in the container {container.name} (a "
                        "start made twice): following it")
        self._watch(spec, {"mode": "container", "container": container.id})
        port = docker_spec.published(container.attrs) if spec.kind in ("serve", "notebook") else None
        if port is None:
            return None
        self._workload.state["port"] = port
        return Address(docker_spec.PUBLISH_HOST, port)

    def _refused(self, spec: WorkloadSpec, preamble: Preamble, staged: StagedContainer, refused) -> None:
        """The engine would not run the container: the workload ends at once, with the engine's words."""
        self._write_preamble(preamble, staged.notes)
        self._ended_at_once(spec.kind, f"cannot start the container: {engine_words(refused)}")

    def _ended_at_once(self, kind: str, reason: str, code: int = 127) -> None:
        """The workload ends before anything ran (its exit record written here, no watcher), `reason` its reason."""
        self.append_log(f"kaos: {reason}", f"kaos: the {WHAT[kind]} ended: {reason}")
        record = outcome.record_for(code)
        record["error"] = reason
        self._workload.write_record(record)

    def _local(self) -> Executor:
        """The local executor that runs an ingestion (a download into the data directory, not user code)."""
        from kaos_backend.executors.local import LocalExecutor
        if self.config is not None:
            return LocalExecutor.from_config(self.config)
        return LocalExecutor(self.data_dir, notify=self.notify, max_log_bytes=self.max_log_bytes)

    def _home(self, log: str) -> Path:
        home = self.data_dir / check_log_name(log)
        home.mkdir(parents=True, exist_ok=True)
        return home

    def _begin(self, spec: WorkloadSpec, home: Path, image: Optional[str], fresh: bool = True) -> None:
        self._workload = WatchedWorkload.begin(spec.kind, spec.job_id, spec.log, home, spec.memory, fresh)
        self._workload.state["image"] = image
        self.log_name = spec.log

    def _write_preamble(self, preamble: Preamble, notes: List[str]) -> None:
        """The log's first records: the preamble, `notes` just before its last one ("beginning to run user code")."""
        lines = preamble.lines()
        self.append_log(*lines[:-1], *notes, lines[-1])

    def _watch(self, spec: WorkloadSpec, watch: dict) -> None:
        state = self._workload.state
        watch.update(log=str(self._log_file()), exit_file=state["exit_path"], stop_file=state["stop_path"],
                     cursor_file=state["cursor_path"], what=WHAT.get(spec.kind, spec.kind), memory=spec.memory,
                     max_log_bytes=self.max_log_bytes, notify=self.notify)
        self._workload.watch(watch)

    # -- observing ------------------------------------------------------------------------------------------
    def poll(self) -> Optional[int]:
        """The exit code once the watcher wrote its record; None while the workload runs; VANISHED when it is
        gone without one (a container removed by someone else, a build whose watcher died)."""
        if self._delegate is not None:
            return self._delegate.poll()
        workload = self._workload
        if workload is None:
            return None
        record = workload.record()
        if record is None and workload.alive():
            return None
        record = record or workload.record()  # it may have ended between the two looks
        if record is not None:
            return record["code"]
        if workload.kind == "build" or not workload.container or not workload.container_exists():
            return VANISHED
        if workload.respawns(add=True) >= MAX_RESPAWNS:
            workload.remove_container()
            return VANISHED
        workload.spawn()  # it died while its container runs: a new one resumes from its cursor
        return None

    def reason(self) -> Optional[str]:
        if self._delegate is not None:
            return self._delegate.reason()
        workload = self._workload
        if workload is None:
            return None
        record = workload.record()
        if record is not None:
            return describe(record)
        if workload.alive():
            return None
        if workload.kind == "build" or not workload.container:
            return BUILD_GONE
        if workload.respawns() > MAX_RESPAWNS:  # poll gave up on its watchers and removed the container itself
            return WATCHER_FAILING
        if workload.container_exists():
            return None if workload.respawns() < MAX_RESPAWNS else WATCHER_FAILING
        return CONTAINER_GONE

    def stop(self, now: bool = False, timeout: float = 10.0) -> None:
        """Stop the workload on request: the container gets SIGTERM, then SIGKILL after `timeout` seconds (at
        once when `now`), and is removed; a build is cancelled. Gone, or ended already, is not an error."""
        if self._delegate is not None:
            return self._delegate.stop(now, timeout)
        workload = self._workload
        if workload is None or workload.record() is not None:
            return None
        workload.request_stop()
        if workload.kind == "build":
            workload.signal(signal.SIGTERM)
        elif workload.container:
            try:
                docker_client.engine().api.stop(workload.container, timeout=0 if now else max(1, math.ceil(timeout)))
            except docker_client.errors().NotFound:
                pass
        deadline = time.monotonic() + STOP_RECORD_WAIT
        while workload.record() is None and workload.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if workload.record() is None:  # no watcher to record it (gone, or stuck): the end is recorded here
            workload.signal(signal.SIGKILL)
            workload.remove_container()
            self.append_log(f"kaos: the {WHAT.get(workload.kind)} ended: killed on request")
            workload.write_record(outcome.record_for(-signal.SIGKILL, requested=True))
        return None

    def remove_unrecorded(self, log: str, workloads: List[str]) -> None:
        """Remove the containers of `workloads` (of the log `log`) that starts whose answer never came left."""
        if workloads:
            remove_unrecorded(docker_client.engine(), self.platform, check_log_name(log).split("/", 1)[1], workloads)

    # -- state ----------------------------------------------------------------------------------------------
    def get_state(self) -> dict:
        if self._delegate is not None:
            return {"local": self._delegate.get_state()}
        return dict(self._workload.state) if self._workload is not None else {}

    def load_state(self, state: dict) -> None:
        self.clear_state()
        if "local" in state:
            self._delegate = self._local()
            self._delegate.load_state(state["local"])
            self.log_name = self._delegate.log_name
            return
        self._workload = WatchedWorkload(dict(state))
        self.log_name = state.get("log")

    def clear_state(self) -> None:
        self._workload = None
        self._delegate = None
        self.log_name = None


register(DockerExecutor.kind, DockerExecutor, DockerExecutor.from_config)
