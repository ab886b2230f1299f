"""The Docker engine as the docker executor and its watchers reach it: one docker SDK client per process (the
engine that DOCKER_HOST names, default the local socket), the base image of builds, and what a platform left
on the engine. The SDK is imported here, on first use: the API and the CLI never need it."""
import os
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional
from urllib.parse import urlsplit

from kaos_backend.executors.engine_requests import EngineError, bound_of, tracked
from kaos_backend.images import labels
from kaos_backend.images.base_image import DEFAULT_TAG as KAOS_BASE_IMAGE

# A build step can be silent for minutes (pip unpacking a big wheel on a busy machine), and a followed log for
# as long as its workload prints nothing: the SDK's default read timeout (60 s) would cut both. The watchers'
# client (docker_watcher.py) waits so long.
STREAM_TIMEOUT = 900
# The scheduler's tick makes its requests (a create, an inspect, a stop) with a client of its own: one that the
# engine never answers holds every controller until then (engine_requests; the engine watch says so meanwhile).
TICK_TIMEOUT = 120
QUICK_TIMEOUT = 5  # seconds, for what an API request asks the engine
# What of the backend's environment reaches a watcher: how to find the engine, and how to run Python.
ENGINE_ENV_NAMES = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONFIG")

_lock = threading.Lock()
_clients: Dict[tuple, object] = {}


class EngineUnavailable(EngineError):
    """No Docker engine answers (or the docker SDK is not installed); the message says which."""


def engine(timeout: float = TICK_TIMEOUT):
    """This process's docker.DockerClient whose read timeout is `timeout` seconds (made on first use; a forked
    child makes its own); its requests are tracked while the scheduler's tick makes them (engine_requests).
    Raises EngineUnavailable when the docker SDK is missing."""
    key = (os.getpid(), timeout)
    with _lock:
        if key not in _clients:
            try:
                import docker
            except ImportError:
                raise EngineUnavailable("the docker executor needs the docker SDK: pip install 'kaos[docker]'") \
                    from None
            client = docker.from_env(timeout=timeout)
            _track(client.api, timeout)
            _clients[key] = client
        return _clients[key]


def _track(api, timeout: float) -> None:
    """Each request `api` (a docker.APIClient: a requests.Session) sends, tracked (engine_requests) with the
    timeout it is sent with as its bound (a stop's is the client's `timeout` and the stop's grace)."""
    send = api.send

    def tracked_send(request, **kwargs):
        with tracked(f"{request.method} {urlsplit(request.url).path}", bound_of(kwargs.get("timeout"), timeout)):
            return send(request, **kwargs)
    api.send = tracked_send


def engine_address() -> str:
    """Where the docker SDK looks for the engine: DOCKER_HOST, else the local socket."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def answering_engine(timeout: float = QUICK_TIMEOUT):
    """A new docker.DockerClient (its read timeout `timeout` seconds) whose engine answered a ping; the caller
    closes it. Raises EngineUnavailable saying where no engine answers and why (or that the SDK is missing)."""
    try:
        import docker
        import requests
    except ImportError:
        raise EngineUnavailable("the docker executor needs the docker SDK: pip install 'kaos[docker]'") from None
    client = None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as error:
        if client is not None:
            client.close()
        raise EngineUnavailable(f"no Docker engine answers at {engine_address()} ({first_line(error)})") from None
    return client


_probe = None      # the client engine_problem pings with (its read timeout short), kept between calls
_probe_pid = None


def engine_problem(timeout: float = QUICK_TIMEOUT) -> Optional[str]:
    """None when the engine answers a ping within `timeout` seconds; else where it was asked and what the
    connection met (one line). Never raises."""
    global _probe, _probe_pid
    try:
        import docker
        import requests
    except ImportError:
        return "the docker SDK is not installed (pip install 'kaos[docker]')"
    try:
        if _probe is None or _probe_pid != os.getpid():
            _probe, _probe_pid = docker.from_env(timeout=timeout), os.getpid()
        _probe.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as error:
        return f"at {engine_address()}: {first_line(error)}"
    return None


def first_line(error: BaseException) -> str:
    """The first line of an error's words (the docker SDK's can run over many), at most 200 characters."""
    text = str(getattr(error, "explanation", None) or error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


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
    return remove_platform(client, platform, kinds=("containers",)).removed["containers"]


# What kaos may make on an engine for a platform, in the order a platform is removed: the containers first (killed
# where they run), so that neither an image nor a network nor a volume is still in use by one of them.
PLATFORM_KINDS = ("containers", "images", "networks", "volumes")
REMOVAL_PASSES = 3


@dataclass
class PlatformRemoval:
    """What `remove_platform` did: the names removed, per kind (`PLATFORM_KINDS`), and for each object of the
    platform still on the engine at the end, `"<kind> <name>: <the engine's words>"`."""
    removed: Dict[str, List[str]] = field(default_factory=dict)
    left: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """`2 containers, 3 images, 0 networks and 1 volume`"""
        counts = [f"{len(self.removed.get(kind, []))} {_plural(kind, len(self.removed.get(kind, [])))}"
                  for kind in PLATFORM_KINDS if kind in self.removed]
        return counts[0] if len(counts) == 1 else ", ".join(counts[:-1]) + " and " + counts[-1]


def remove_platform(client, platform: str, kinds=PLATFORM_KINDS) -> PlatformRemoval:
    """Remove from the engine every container (killed first where it runs), image, network and volume that kaos
    labelled for `platform` (`io.kaos.managed=true` and `io.kaos.platform=<platform>`), and nothing else: not the
    base image (it has no such labels), not another platform's, not the user's. Gone already is not an error; what
    the engine refuses to remove (an image a container of someone else's runs, a network one is connected to) is
    tried again in a later pass (up to REMOVAL_PASSES), then named in `left`. Raises the docker SDK's
    DockerException when the engine stops answering."""
    removal = PlatformRemoval(removed={kind: [] for kind in kinds})
    refused: Dict[str, str] = {}
    for _ in range(REMOVAL_PASSES):
        progress = False
        for kind in kinds:
            for thing in _platform_objects(client, kind, platform):
                name = _name(kind, thing)
                try:
                    _remove(client, kind, thing)
                except errors().NotFound:
                    continue
                except errors().APIError as error:
                    if "in progress" in str(error):  # another removal of it (its watcher's) is under way
                        continue
                    refused[thing.id] = f"{kind[:-1]} {name}: {first_line(error)}"
                    continue
                refused.pop(thing.id, None)
                removal.removed[kind].append(name)
                progress = True
        if not progress:
            break
    remaining = {thing.id for kind in kinds for thing in _platform_objects(client, kind, platform)}
    removal.left = [words for key, words in refused.items() if key in remaining]
    return removal


def _platform_objects(client, kind: str, platform: str) -> list:
    if kind == "containers":
        return client.containers.list(all=True, filters=platform_filter(platform))
    return getattr(client, kind).list(filters=platform_filter(platform))


def _remove(client, kind: str, thing) -> None:
    if kind == "containers":
        thing.remove(force=True, v=True)
    elif kind == "images":
        client.images.remove(thing.id, force=True)  # every tag of it: all of them are kaos's
    elif kind == "volumes":
        thing.remove(force=True)
    else:
        thing.remove()


def _name(kind: str, thing) -> str:
    if kind == "images":
        return thing.tags[0] if thing.tags else thing.short_id
    return thing.name


def _plural(kind: str, count: int) -> str:
    return kind if count != 1 else kind[:-1]


def engine_environment() -> dict:
    """The part of this process's environment a watcher needs to reach the same engine."""
    return {key: os.environ[key] for key in ENGINE_ENV_NAMES if key in os.environ}
