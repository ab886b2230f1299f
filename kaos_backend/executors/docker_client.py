"""The Docker engine as the docker executor and its watchers reach it: one docker SDK client per process (the
engine that DOCKER_HOST names, default the local socket), the base image of builds, and what a platform left
on the engine. The SDK is imported here, on first use: the API and the CLI never need it."""
import os
import threading
from typing import List, Optional

from kaos_backend.images import labels
from kaos_backend.images.base_image import DEFAULT_TAG as KAOS_BASE_IMAGE

# A build step can be silent for minutes (pip unpacking a big wheel on a busy machine), and a followed log for
# as long as its workload prints nothing: the SDK's default read timeout (60 s) would cut both.
CLIENT_TIMEOUT = 900
QUICK_TIMEOUT = 5  # seconds, for what an API request asks the engine
# What of the backend's environment reaches a watcher: how to find the engine, and how to run Python.
ENGINE_ENV_NAMES = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONFIG")

_lock = threading.Lock()
_client = None
_client_pid = None


class EngineUnavailable(RuntimeError):
    """No Docker engine answers (or the docker SDK is not installed); the message says which."""


def engine():
    """This process's docker.DockerClient (made on first use; a forked child makes its own). Raises
    EngineUnavailable when the docker SDK is missing."""
    global _client, _client_pid
    with _lock:
        if _client is None or _client_pid != os.getpid():
            try:
                import docker
            except ImportError:
                raise EngineUnavailable("the docker executor needs the docker SDK: pip install 'kaos[docker]'") \
                    from None
            _client = docker.from_env(timeout=CLIENT_TIMEOUT)
            _client_pid = os.getpid()
        return _client


def engine_info(timeout: float = QUICK_TIMEOUT) -> dict:
    """The engine's `docker info`, asked with a short timeout (for an API request, which must not wait long)."""
    import docker
    client = docker.from_env(timeout=timeout)
    try:
        return client.info()
    finally:
        client.close()


def errors():
    """The docker SDK's errors module (docker.errors: NotFound, ImageNotFound, APIError, DockerException)."""
    import docker.errors
    return docker.errors


def base_image(client, configured: str) -> Optional[str]:
    """The BASE_IMAGE a build gets: `configured` (KAOS_BASE_IMAGE) when set, else kaos's own base image when the
    engine has it, else None (the Dockerfile's own default, e.g. python:3.11-slim)."""
    if configured:
        return configured
    try:
        client.images.get(KAOS_BASE_IMAGE)
    except errors().ImageNotFound:
        return None
    return KAOS_BASE_IMAGE


def platform_filter(platform: str) -> dict:
    return {"label": [f"{labels.MANAGED}=true", f"{labels.PLATFORM}={platform}"]}


def remove_platform_containers(client, platform: str) -> List[str]:
    """Remove (killing where they run) every container of `platform` (its label); the names removed. Their
    watchers see them gone and end."""
    removed = []
    for container in client.containers.list(all=True, filters=platform_filter(platform)):
        try:
            container.remove(force=True, v=True)
            removed.append(container.name)
        except errors().NotFound:
            pass
    return removed


def engine_environment() -> dict:
    """The part of this process's environment a watcher needs to reach the same engine."""
    return {key: os.environ[key] for key in ENGINE_ENV_NAMES if key in os.environ}
