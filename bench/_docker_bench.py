"""Shared pieces of the Docker benchmarks (bench/docker_speed.py): the engine or why there is none, the base image,
a backend whose workloads run on the engine (KAOS_EXECUTOR=docker), a base image of one run's own so that a build
on it finds no layer cache, and removing exactly what a run made (its platform's containers and images, and the
images labelled with its run id), never the base image or anything else on the engine."""
import contextlib
import io
import os
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from _backend import BackendApi, BenchFailure, running_backend, zip_bundle

from kaos_backend.config import platform_id
from kaos_backend.executors.docker_client import platform_filter, remove_platform_containers
from kaos_backend.images import base_image as base
from kaos_backend.images import ca_bundle

BENCH_LABEL = "io.kaos.bench"   # the run id, on the bench's own base image and so on every image built FROM it
CLIENT_TIMEOUT = 900            # a build step can be silent for minutes (pip unpacking a big wheel)
STALE_HOURS = 3.0               # a bench run's leftovers older than this are an earlier, killed run's
POLL_SECONDS = 0.02
TERMINAL = {"JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED"}
STEP = re.compile(r"\bStep \d+/\d+ : ")  # a classic builder's step, in a log record `[date time] Step 3/9 : RUN ...`


def engine() -> Tuple[Optional[object], Optional[str]]:
    """(a docker.DockerClient that answered a ping, None) or (None, why there is none)."""
    try:
        import docker
    except ImportError:
        return None, "the docker SDK is not installed (pip install 'kaos[docker]')"
    try:
        client = docker.from_env(timeout=CLIENT_TIMEOUT)
        client.ping()
    except docker.errors.DockerException as error:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return None, (f"no Docker engine answers at {where} ({str(error).splitlines()[0][:150]}); "
                      "start one with scripts/start-dockerd.sh")
    return client, None


def base_image_tag(client) -> str:
    """KAOS_BASE_IMAGE when set (it must be on the engine: there is no registry to pull from), else kaos's own
    base image, made when missing (docs/docker-engine.md). Raises BenchFailure."""
    import docker.errors
    tag = os.environ.get("KAOS_BASE_IMAGE") or base.DEFAULT_TAG
    if tag != base.DEFAULT_TAG:
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            raise BenchFailure(f"KAOS_BASE_IMAGE={tag} is not on the engine") from None
        return tag
    try:
        outcome = base.ensure_base_image(client, base.Recipe(ca_bundle=ca_bundle.host_bundle_path()))
    except base.BaseImageError as error:
        raise BenchFailure(f"the base image {tag} is missing and cannot be made: {error}") from None
    if outcome.built:
        print(f"made the base image {tag} (not measured): {outcome.timings}", flush=True)
    return tag


def new_run_id(part: str) -> str:
    return f"{part}-{uuid.uuid4().hex[:8]}"


def run_base_image(client, base_tag: str, run_id: str) -> str:
    """`kaos-bench-base:<run id>`: `base_tag` with one label more (BENCH_LABEL=<run id>), so a new image id that
    no build on this engine has used as its parent: every step of a build FROM it misses the layer cache, and
    every image built FROM it carries the label. Same files, same Python as `base_tag`."""
    tag = f"kaos-bench-base:{run_id.rsplit('-', 1)[-1]}"
    dockerfile = f"FROM {base_tag}\nLABEL {BENCH_LABEL}={run_id}\n".encode()
    for chunk in client.api.build(fileobj=io.BytesIO(dockerfile), tag=tag, pull=False, rm=True, forcerm=True,
                                  decode=True):
        if "error" in chunk:
            raise BenchFailure(f"cannot make the bench's base image {tag}: {chunk['error']}")
    return tag


def remove_run(client, run_id: str) -> None:
    """Remove every container and image labelled BENCH_LABEL=<run id> (the run's base image, what was built FROM
    it, intermediate layers included, and the containers of those images), children before parents."""
    remove_labelled(client, f"{BENCH_LABEL}={run_id}")


def remove_stale(client, hours: float = STALE_HOURS) -> None:
    """Remove what an earlier run left when it was killed outright (no `finally` ran): the containers and images
    labelled BENCH_LABEL, of any run, made more than `hours` ago (no run lasts that long; a run going on beside
    this one is left alone)."""
    cutoff = datetime.now(timezone.utc) - timedelta(hours=hours)
    stale = {run for run in _runs(client) if run[1] < cutoff}
    for run_id, created in sorted(stale):
        print(f"removing the leftovers of an earlier bench run {run_id} (made {created:%Y-%m-%d %H:%M} UTC)")
        remove_labelled(client, f"{BENCH_LABEL}={run_id}")


def _runs(client) -> set:
    """(run id, when its oldest image was made) of every run with an image on the engine."""
    oldest = {}
    for image in client.images.list(all=True, filters={"label": BENCH_LABEL}):
        run_id = (image.labels or {}).get(BENCH_LABEL)
        made = _created(image.attrs.get("Created"))
        if run_id and made and (run_id not in oldest or made < oldest[run_id]):
            oldest[run_id] = made
    return set(oldest.items())


def _created(text) -> Optional[datetime]:
    """The engine's `Created` (`2026-11-30T21:20:21.123456789Z`, or seconds since the epoch) as a UTC time."""
    if isinstance(text, (int, float)):
        return datetime.fromtimestamp(text, timezone.utc)
    try:
        return datetime.strptime(str(text)[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def remove_labelled(client, label: str) -> None:
    """Remove the containers, then the images, that carry `label` (`key=value`); an image others depend on is
    removed once they are gone."""
    import docker.errors
    for container in client.containers.list(all=True, filters={"label": label}):
        try:
            container.remove(force=True, v=True)
        except docker.errors.APIError:
            pass
    for _ in range(20):  # each pass removes the images nothing depends on any more
        images = client.images.list(all=True, filters={"label": label})
        if not images:
            return
        for image in images:
            try:
                client.images.remove(image.id, force=True)
            except docker.errors.APIError:
                pass  # a parent of another one: a later pass


def remove_platform(client, platform: str) -> None:
    """Remove the containers and the images of `platform` (its io.kaos.platform label)."""
    import docker.errors
    remove_platform_containers(client, platform)
    for image in client.images.list(filters=platform_filter(platform)):
        try:
            client.images.remove(image.id, force=True)
        except docker.errors.APIError:
            pass


@contextlib.contextmanager
def docker_backend(client, data_dir: Path, base_tag: str) -> Iterator[object]:
    """A backend on `data_dir` running its workloads on the engine (KAOS_EXECUTOR=docker, KAOS_BASE_IMAGE=
    `base_tag`); afterwards it is stopped and its platform's containers and images are removed."""
    try:
        with running_backend(data_dir, env={"KAOS_EXECUTOR": "docker", "KAOS_BASE_IMAGE": base_tag}) as backend:
            yield backend
    finally:
        remove_platform(client, platform_id(data_dir))


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min; {os.cpu_count()} CPUs)"


def timed_build(api: BackendApi, workspace: str, source_dir: Path, zip_path: Path, timeout: float) -> tuple:
    """(seconds from the `POST /train/<ws>` of `source_dir` to the build job's JOB_SUCCESS, build job id)."""
    zip_bundle(source_dir, zip_path)
    start = time.perf_counter()
    answer = api.post_zip(f"train/{workspace}", zip_path)
    if not answer.get("job_id"):
        raise BenchFailure(f"the backend started no build for a new bundle: {answer}")
    state, seen = api.wait_for_job(workspace, answer["job_id"], timeout)
    if state != "JOB_SUCCESS":
        raise BenchFailure(f"build {answer['job_id']} ended {state}:\n{build_log(api, workspace, answer['job_id'])}")
    return seen - start, answer["job_id"]


def build_log(api: BackendApi, workspace: str, job_id: str) -> str:
    return api.call("GET", f"train/{workspace}/build/{job_id}/logs")


def steps(build_log_text: str) -> Tuple[int, int]:
    """(steps the build ran, steps of those the engine took from its layer cache), from the classic builder's
    `Step 3/9 : ...` and ` ---> Using cache` lines."""
    lines = build_log_text.splitlines()
    return (sum(1 for line in lines if STEP.search(line)), sum(1 for line in lines if "---> Using cache" in line))


def new_job(api: BackendApi, workspace: str, known: set, timeout: float) -> str:
    """The id of the first train job of the workspace not in `known`, as soon as the API lists it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in api.train_list(workspace)["training"]:
            if job["job_id"] not in known:
                return job["job_id"]
        time.sleep(POLL_SECONDS)
    raise BenchFailure(f"no new training in workspace {workspace} after {timeout:.0f} s")


def wait_for_line(api: BackendApi, workspace: str, job_id: str, line: str, timeout: float) -> float:
    """time.perf_counter() when `GET /train/<ws>/<job id>/logs` first holds `line` (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    polls = 0
    while time.monotonic() < deadline:
        if line in api.call("GET", f"train/{workspace}/{job_id}/logs"):
            return time.perf_counter()
        polls += 1
        if polls % 25 == 0 and api.job(workspace, job_id)["state"] in TERMINAL:  # ended without it: say why
            if line in api.call("GET", f"train/{workspace}/{job_id}/logs"):
                return time.perf_counter()
            raise BenchFailure(f"training {job_id} ended without printing {line!r}:\n"
                               f"{api.job_log_tail(workspace, job_id)}")
        time.sleep(POLL_SECONDS)
    raise BenchFailure(f"training {job_id} printed no {line!r} in {timeout:.0f} s")


def container_pids(client, platform: str, job: str) -> List[int]:
    """The host pid of the main process of each running container of `platform` labelled io.kaos.job=<job>."""
    from kaos_backend.images import labels
    filters = {"label": platform_filter(platform)["label"] + [f"{labels.JOB}={job}"]}
    return [container.attrs["State"]["Pid"] for container in client.containers.list(filters=filters)]
