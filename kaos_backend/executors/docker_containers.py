"""A workload's container on the engine: created from its image with kaos's labels, limits and mounts, the code
copied into its working directory, started (docker_spec.py says what, docker_staging.py with which files)."""
import os
import time

from kaos_backend.executors import docker_client, docker_spec, engine_requests
from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.executors.docker_staging import StagedContainer
from kaos_backend.executors.workload_env import workload_env
from kaos_backend.images import labels


def start_container(client, spec: WorkloadSpec, staged: StagedContainer, name: str, platform: str):
    """Create the container of the staged workload `spec` (named `name`, labelled as `platform`'s) from its image,
    in the image's working directory (DEFAULT_WORKDIR when it has none), copy the staged files in, start it; the
    container (removed again when it could not start). Raises docker.errors.APIError (ImageNotFound, the engine's
    refusals: no GPU driver, a cpu limit over the machine's, ...). A request the engine did not answer (timed
    out, or its connection closed: engine_requests.is_timeout/is_dropped) leaves the container as it is: the
    engine may have started it, and the next start's `existing_container` adopts it (or removes it when it never
    started), so that the workload's code never runs twice."""
    import docker.errors

    from kaos_backend.resources import memory_to_bytes
    if not spec.image:
        raise docker.errors.ImageNotFound("the workload names no image (its build made none)")
    image = client.images.get(spec.image)
    workdir = image_workdir(image)
    env = workload_env(spec, staged.env, os.environ)
    env.update(spec.secrets)  # (a notebook's token: never on a command line)
    job = spec.log.split("/", 1)[1]
    arguments = docker_spec.container_arguments(
        name=name, command=staged.command, workdir=workdir, env=env, mounts=staged.mounts,
        workload_labels=docker_spec.workload_labels(platform, spec.kind, job, spec.job_id),
        limits=docker_spec.resource_limits(spec.cpu, memory_to_bytes(spec.memory) if spec.memory else None,
                                           spec.gpu),
        publish=staged.port is not None, port=staged.port or docker_spec.SERVE_PORT)
    container = client.containers.create(image.id, **arguments)
    try:
        if staged.archive is not None:
            container.put_archive(workdir, staged.archive)
        container.start()
        container.reload()
    except BaseException as error:
        if not (engine_requests.is_timeout(error) or engine_requests.is_dropped(error)):
            client.api.remove_container(container.id, force=True, v=True)
        raise
    return container


RUNS = ("running", "restarting", "paused")
ENDED = "exited"
GONE_WAIT = 30.0  # seconds for the engine to remove an ended container of the same name


def existing_container(client, name: str, platform: str, workload: str, adopt_ended: bool = True):
    """The container `name` when it is this platform's `workload` and was started: it is followed, not started
    again. It runs (the scheduler ended between a start and its record), or runs or ended after a start whose
    answer never came (`start_container`); an ended one is adopted only with `adopt_ended` (not when the
    workload's end was recorded already: an earlier run's container its watcher could not remove). None when
    there is none; one of the workload that never started (a start cut short between its creation and its
    start), or ended and not adopted, is removed first. Another's container of that name is left alone (the
    creation then fails with the engine's words)."""
    found = _own_container(client, name, platform, workload)
    if found is None:
        return None
    if found.status in RUNS or (adopt_ended and found.status == ENDED and _started(found)):
        return found
    if not _remove(client, found.id):
        return None
    deadline = time.monotonic() + GONE_WAIT
    while time.monotonic() < deadline:
        try:
            client.api.inspect_container(found.id)
        except docker_client.errors().NotFound:
            return None
        time.sleep(0.05)
    return None  # still there: the creation says so


def remove_unrecorded(client, platform: str, job: str, workloads) -> int:
    """Remove the containers of this platform's `job` (labels.JOB: the job's id, an endpoint's or a notebook's
    name) whose workload is one of `workloads`, running or not: left by starts whose answer never came, that no
    row records. How many were found."""
    found = client.api.containers(all=True, filters={"label": [f"{labels.PLATFORM}={platform}",
                                                               f"{labels.JOB}={job}"]})
    mine = [container["Id"] for container in found
            if (container.get("Labels") or {}).get(labels.WORKLOAD) in set(workloads)]
    for container in mine:
        _remove(client, container)
    return len(mine)


def _own_container(client, name: str, platform: str, workload: str):
    """The container `name` when it is this platform's `workload`, else None."""
    try:
        found = client.containers.get(name)
    except docker_client.errors().NotFound:
        return None
    if (found.labels.get(labels.PLATFORM), found.labels.get(labels.WORKLOAD)) != (platform, workload):
        return None
    return found


def _started(container) -> bool:
    """The engine started `container` once (an ended container that never ran says the zero time)."""
    return not str((container.attrs.get("State") or {}).get("StartedAt") or "0001-").startswith("0001-")


def _remove(client, container_id: str) -> bool:
    """Remove the container (killed if it runs); False when it is gone already."""
    try:
        client.api.remove_container(container_id, force=True, v=True)
    except docker_client.errors().NotFound:
        return False
    except docker_client.errors().APIError as error:  # "removal already in progress": its watcher removes it
        if "in progress" not in str(error):
            raise
    return True


def image_workdir(image) -> str:
    """The working directory of an image (docker SDK Image), DEFAULT_WORKDIR when it sets none."""
    return (image.attrs.get("Config") or {}).get("WorkingDir") or docker_spec.DEFAULT_WORKDIR


def engine_words(error) -> str:
    """What the engine said when it refused (its explanation, not the SDK's HTTP wording)."""
    text = getattr(error, "explanation", None) or str(error)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " ".join(str(text).split())[:500]
