"""A workload's container on the engine: created from its image with kaos's labels, limits and mounts, the code
copied into its working directory, started (docker_spec.py says what, docker_staging.py with which files)."""
import os
import time

from kaos_backend.executors import docker_spec
from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.executors.docker_staging import StagedContainer
from kaos_backend.executors.workload_env import workload_env
from kaos_backend.images import labels


def start_container(client, spec: WorkloadSpec, staged: StagedContainer, name: str, platform: str):
    """Create the container of the staged workload `spec` (named `name`, labelled as `platform`'s) from its image,
    in the image's working directory (DEFAULT_WORKDIR when it has none), copy the staged files in, start it; the
    container (removed again when it could not start). Raises docker.errors.APIError (ImageNotFound, the engine's
    refusals: no GPU driver, a cpu limit over the machine's, ...)."""
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
    except BaseException:
        client.api.remove_container(container.id, force=True, v=True)
        raise
    return container


RUNS = ("running", "restarting", "paused")
GONE_WAIT = 30.0  # seconds for the engine to remove an ended container of the same name


def existing_container(client, name: str, platform: str, workload: str):
    """The container `name` when it is this platform's `workload` and runs: it was started already (the scheduler
    ended between a start and its record, and starts it again), so it is followed, not started twice. None when
    there is none; a container of the workload that ended, or never started (a start cut short between its
    creation and its start), is removed first. Another's container of that name is left alone (the creation
    then fails with the engine's words)."""
    import docker.errors

    try:
        found = client.containers.get(name)
    except docker.errors.NotFound:
        return None
    if (found.labels.get(labels.PLATFORM), found.labels.get(labels.WORKLOAD)) != (platform, workload):
        return None
    if found.status in RUNS:
        return found
    try:
        client.api.remove_container(found.id, force=True, v=True)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as error:  # "removal already in progress": its watcher removes it
        if "in progress" not in str(error):
            raise
    deadline = time.monotonic() + GONE_WAIT
    while time.monotonic() < deadline:
        try:
            client.api.inspect_container(found.id)
        except docker.errors.NotFound:
            return None
        time.sleep(0.05)
    return None  # still there: the creation says so


def image_workdir(image) -> str:
    """The working directory of an image (docker SDK Image), DEFAULT_WORKDIR when it sets none."""
    return (image.attrs.get("Config") or {}).get("WorkingDir") or docker_spec.DEFAULT_WORKDIR


def engine_words(error) -> str:
    """What the engine said when it refused (its explanation, not the SDK's HTTP wording)."""
    text = getattr(error, "explanation", None) or str(error)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " ".join(str(text).split())[:500]
