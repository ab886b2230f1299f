"""kaos workloads as the docker SDK's arguments: a container for a training or an endpoint, a build for an image.
Pure functions: no engine, no files (docker.py does the I/O).

    train   `./train /pfs/out/<hex6>` in the image's working directory, the data read-only at
            /pfs/data/<name:hash5>, the hyperparameters read-only at /pfs/hyper, the output at /pfs/out/<hex6>:
            kaos 1.x's layout (reference §6.1, §7.1), so its bundles run unchanged
    serve   `./serve`, listening on 8080 (PORT; HOST 0.0.0.0) as 1.x's nginx does (§7.2), published on
            127.0.0.1 on a port the engine picks (the gateway is the way in)
    notebook  `jupyter lab` (notebook_command.py) listening on 8888, published on 127.0.0.1 as an endpoint is;
            its kept work directory mounted at the image's working directory, its data read-only at
            /pfs/data/<name>, its model read-only at /pfs/out/<hex6>
    build   `docker build -f <bundle>/Dockerfile <bundle>/model` (§7.1, §9) on the host network, never pulling,
            with the layer cache, BASE_IMAGE as a build argument

Every container runs under the engine's init (tini): it passes signals on to the workload's main process and
reaps orphans, and when the main process ends the container ends, taking every other process with it.
"""
import signal
from typing import Dict, List, Optional, Sequence

from kaos_backend.executors.workload_env import SERVE_PORT, data_target  # noqa: F401 (data_target: a mount's target)
from kaos_backend.images import labels

SERVE_PORT_KEY = f"{SERVE_PORT}/tcp"
PUBLISH_HOST = "127.0.0.1"
DEFAULT_WORKDIR = "/opt/program"  # for an image without a WORKDIR: the templates' (and 1.x's) one
# The engine keeps a container's output until the container is removed; its watcher copies it into the job's
# log as it comes. A bound on what the engine keeps meanwhile (the log itself has its own: KAOS_MAX_LOG_MB).
LOG_CONFIG = {"Type": "json-file", "Config": {"max-size": "64m", "max-file": "2"}}
# What user code may do in its container beyond running: of the engine's default capabilities only those a root
# process needs to hand work to unprivileged ones (1.x's serve: nginx's master starts its workers as another user
# and signals them; files chowned to them) and to write what it was given; no raw sockets (NET_RAW), device
# nodes, chroot, file capabilities, audit writes or ports under 1024. No privilege gained through a setuid binary,
# and a bound on processes and threads (a fork bomb stops there, not at the machine's limit).
CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"]
SECURITY_OPT = ["no-new-privileges"]
PIDS_LIMIT = 4096


def bind(source: str, target: str, read_only: bool) -> Dict:
    """A bind mount in the engine's structured form (a target such as /pfs/data/features:9fd9d holds a colon,
    which the `-v source:target:mode` form cannot say)."""
    return {"Type": "bind", "Source": source, "Target": target, "ReadOnly": read_only}


def workload_labels(platform: str, kind: str, job: str, workload: str) -> Dict[str, str]:
    """kaos's labels (kaos_backend/images/labels.py) on what one workload makes."""
    return {labels.MANAGED: "true", labels.KIND: kind, labels.PLATFORM: platform, labels.JOB: job,
            labels.WORKLOAD: workload}


def container_name(platform: str, workload: str) -> str:
    """`kaos-<platform>-<workload>` (a training's workload is `<job id>-<partition>`, an endpoint's its name):
    readable in `docker ps`, and the same for every start of one workload, so that the engine itself refuses a
    second container of it (docker_containers.existing_container adopts or clears the first)."""
    return f"kaos-{platform}-{workload}"


def published(attrs: Dict) -> Optional[int]:
    """The first host port a container's `attrs` say the engine published (None when it published none)."""
    for bindings in ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).values():
        for binding in bindings or []:
            if binding.get("HostPort"):
                return int(binding["HostPort"])
    return None


def resource_limits(cpu: Optional[float], memory_bytes: Optional[int], gpu: int) -> Dict:
    """--cpu (cores), --memory (bytes) and --gpu (a count) as container limits: cpu as NanoCpus, memory as the
    memory limit and the same memory+swap limit (no swap beyond it, on machines that have swap), GPUs as a
    device request to the engine's GPU driver (the NVIDIA container toolkit)."""
    limits: Dict = {}
    if cpu:
        limits["nano_cpus"] = int(round(cpu * 1e9))
    if memory_bytes:
        limits["mem_limit"] = memory_bytes
        limits["memswap_limit"] = memory_bytes
    if gpu:
        limits["device_requests"] = [{"Count": int(gpu), "Capabilities": [["gpu"]]}]
    return limits


def container_arguments(*, name: str, command: Sequence[str], workdir: str, env: Dict[str, str],
                        mounts: List[Dict], workload_labels: Dict[str, str], limits: Dict,
                        publish: bool, port: int = SERVE_PORT) -> Dict:
    """The keyword arguments of `client.containers.create(image, **them)` for one workload. `command` replaces
    the image's entrypoint and command (1.x ran `./train` and `./serve` whatever the image said); `publish`
    publishes `port` (8080, a notebook's 8888) on 127.0.0.1 at a port the engine picks. Every container drops
    every capability but CAPABILITIES, gains no privilege (SECURITY_OPT) and runs at most PIDS_LIMIT tasks."""
    arguments = {"name": name, "entrypoint": list(command), "command": [], "working_dir": workdir,
                 "environment": dict(env), "mounts": list(mounts), "labels": dict(workload_labels), "init": True,
                 "stdin_open": False, "tty": False, "log_config": LOG_CONFIG, "cap_drop": ["ALL"],
                 "cap_add": list(CAPABILITIES), "security_opt": list(SECURITY_OPT), "pids_limit": PIDS_LIMIT,
                 **limits}
    if publish:
        arguments["ports"] = {f"{port}/tcp": (PUBLISH_HOST, None)}
    return arguments


def build_arguments(*, context: str, dockerfile: str, tag: str, base_image: Optional[str],
                    image_labels: Dict[str, str]) -> Dict:
    """The keyword arguments of `client.api.build(**them)`: the bundle's Dockerfile (an absolute path: the SDK
    adds it to the context when it lies outside) with model/ as the context, on the host network (pip reaches
    what the host reaches), never pulling (no registry is needed when the base image is on the engine), the
    layer cache used, intermediate containers removed even when a step fails, output decoded as it comes."""
    return {"path": context, "dockerfile": dockerfile, "tag": tag,
            "buildargs": {"BASE_IMAGE": base_image} if base_image else {}, "labels": dict(image_labels),
            "network_mode": "host", "pull": False, "rm": True, "forcerm": True, "decode": True}


def published_port(attrs: Dict, port: int = SERVE_PORT) -> Optional[int]:
    """The host port the engine published `port` (8080) on, from a container's `attrs` (None while there is
    none)."""
    bindings = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp") or []
    for binding in bindings:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def exit_status(exit_code: int) -> int:
    """A container's exit code as `Popen.returncode` says it: 128 + N from the init is -N (signal N ended the
    main process), anything else as it is."""
    if exit_code > 128:
        try:
            return -signal.Signals(exit_code - 128).value
        except ValueError:
            pass
    return exit_code
