"""The backend's configuration: one frozen `Config`, read from `KAOS_*` environment variables."""
import hashlib
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

EXECUTORS = ("local", "docker", "kubernetes")
CONTAINMENT_MODES = ("auto", "cgroup", "subreaper")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")  # Kubernetes' imagePullPolicy
IMAGE_BUILDERS = ("docker", "local-venv")  # kubernetes: who builds images (kubernetes_images.py)
MB = 1024 * 1024


def platform_id(data_dir) -> str:
    """A short stable name for the backend of one data directory: its workloads' cgroups are
    `kaos-<platform_id>`, its scheduler's wake-up socket `kaos-scheduler-<platform_id>`."""
    return hashlib.sha256(os.path.realpath(str(data_dir)).encode()).hexdigest()[:12]


class ConfigError(ValueError):
    """A `KAOS_*` setting has a value the backend cannot use; the message says which and why."""


@dataclass(frozen=True)
class Config:
    data_dir: Path
    database_url: str
    executor: str = "local"
    token: Optional[str] = None
    max_cpu: Optional[float] = None      # cores; None (or 0, as in the original) = no check
    max_memory: Optional[float] = None   # Gi; None (or 0, as in the original) = no check
    max_gpu: Optional[int] = None        # None = unknown = no check; 0 = GPUs are not enabled
    max_upload_mb: int = 1024
    max_bundle_mb: int = 4096            # uncompressed
    base_image: str = ""                 # the Docker builds' BASE_IMAGE; empty: kaos-base-python:bookworm when the
                                         # engine has it, else each Dockerfile's own default (python:3.11-slim)
    namespace: str = "kaos"
    registry: str = ""
    internal_url: str = ""               # kubernetes: where pods reach the internal routes; empty = the backend's
                                         # Service in `namespace` (kubernetes_spec.KubeSettings.base_url)
    image_pull_policy: str = ""          # kubernetes: empty = IfNotPresent without a registry, Always with one
    service_host: str = ""               # empty = derive from the request
    max_log_mb: int = 64                 # output a workload may log; past it, lines are counted, not logged
    endpoint_start_timeout: float = 300  # seconds an endpoint may take to become ready before it counts as failed
    notebook_idle_timeout: float = 28800  # seconds a notebook may be idle before it stops itself (0: never)
    containment: str = "auto"            # local workloads: auto (a cgroup where possible) | cgroup | subreaper
    workload_user: str = "kaos"          # local workloads run as this user when the backend is root ("root": no)
    internal_port: Optional[int] = None  # a port of its own where the front serves only /internal/artifacts/
                                         # (kubernetes: what a NetworkPolicy lets workload pods reach); None: none
    kubeconfig: str = ""                 # kubernetes: a kubeconfig file; empty = $KUBECONFIG, else in-cluster
                                         # config inside a pod, else ~/.kube/config
    kube_context: str = ""               # kubernetes: the kubeconfig's context; empty = its current context
    image_builder: str = "docker"        # kubernetes: "docker" (a Docker engine builds, pushes to `registry`) or
                                         # "local-venv" (tests against a fake cluster whose pods run here)
    pod_pending_timeout: float = 300     # kubernetes: seconds a pod may stay unschedulable or unable to pull its
                                         # image before its workload fails with that reason
    scheduler_hung_timeout: float = 120  # seconds the scheduler may go without a heartbeat (its tick not waiting
                                         # on its engine) before the supervisor kills it, to start it again; 0: never
    front_hung_timeout: float = 30       # the same for the front, whose event loop beats every second; 0: never
    notebook_storage: str = "10Gi"       # kubernetes: the size of a notebook's work directory, a
                                         # PersistentVolumeClaim that outlives kills and culling; "" = an emptyDir

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * MB

    @property
    def max_bundle_bytes(self) -> int:
        return self.max_bundle_mb * MB

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "token"

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **overrides: Any) -> "Config":
        """Read `KAOS_<FIELD>` from `environ` (default `os.environ`); keyword overrides win over the environment."""
        environ = os.environ if environ is None else environ
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown Config fields: {', '.join(sorted(unknown))}")

        def raw(name: str) -> Any:
            if name in overrides:
                return overrides[name]
            value = environ.get(f"KAOS_{name.upper()}", "")
            return value.strip() if value.strip() else None

        data_dir = _path(raw("data_dir") or "~/.kaos-backend")
        values = {
            "data_dir": data_dir,
            "database_url": _database_url(raw("database_url") or f"sqlite:///{data_dir / 'kaos.db'}"),
            "executor": _choice("executor", raw("executor") or "local", EXECUTORS),
            "containment": _choice("containment", raw("containment") or "auto", CONTAINMENT_MODES),
            "token": raw("token"),
            "max_cpu": _number("max_cpu", raw("max_cpu"), float),
            "max_memory": _number("max_memory", raw("max_memory"), float),
            "max_gpu": _number("max_gpu", raw("max_gpu"), int),
            "max_upload_mb": _number("max_upload_mb", raw("max_upload_mb"), int, default=1024, minimum=1),
            "max_bundle_mb": _number("max_bundle_mb", raw("max_bundle_mb"), int, default=4096, minimum=1),
            "max_log_mb": _number("max_log_mb", raw("max_log_mb"), int, default=64, minimum=1),
            "endpoint_start_timeout": _number("endpoint_start_timeout", raw("endpoint_start_timeout"), float,
                                              default=300.0, minimum=1),
            "notebook_idle_timeout": _number("notebook_idle_timeout", raw("notebook_idle_timeout"), float,
                                             default=28800.0, minimum=0),
            "internal_port": _number("internal_port", raw("internal_port"), int, minimum=1),
            "image_builder": _choice("image_builder", raw("image_builder") or "docker", IMAGE_BUILDERS),
            "pod_pending_timeout": _number("pod_pending_timeout", raw("pod_pending_timeout"), float, default=300.0),
            "scheduler_hung_timeout": _number("scheduler_hung_timeout", raw("scheduler_hung_timeout"), float,
                                              default=120.0, minimum=0),
            "front_hung_timeout": _number("front_hung_timeout", raw("front_hung_timeout"), float, default=30.0,
                                          minimum=0),
        }
        for name in ("base_image", "namespace", "registry", "service_host", "workload_user", "internal_url",
                     "image_pull_policy", "kubeconfig", "kube_context", "notebook_storage"):
            value = raw(name)
            values[name] = str(value) if value is not None else cls.__dataclass_fields__[name].default
        if not values["namespace"]:
            raise ConfigError("KAOS_NAMESPACE must not be empty")
        if values["image_pull_policy"] and values["image_pull_policy"] not in PULL_POLICIES:
            raise ConfigError(f"KAOS_IMAGE_PULL_POLICY must be one of {', '.join(PULL_POLICIES)}, "
                              f"not {values['image_pull_policy']!r}")
        if values["internal_url"] and not values["internal_url"].startswith(("http://", "https://")):
            raise ConfigError(f"KAOS_INTERNAL_URL must be an http:// or https:// URL, not {values['internal_url']!r}")
        if values["notebook_storage"].strip():
            from kaos_backend.resources import memory_to_bytes
            try:
                memory_to_bytes(values["notebook_storage"].strip())
            except Exception:  # noqa: BLE001 - its own error names the quantity
                raise ConfigError("KAOS_NOTEBOOK_STORAGE must be a Kubernetes quantity such as 10Gi (or empty: an "
                                  f"emptyDir), not {values['notebook_storage']!r}") from None
        if values["internal_port"] is not None and values["internal_port"] > 65535:
            raise ConfigError(f"KAOS_INTERNAL_PORT must be a port number (1-65535), not {values['internal_port']}")
        return cls(**values)


def _path(value: Any) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(value))))


def _database_url(value: Any) -> str:
    url = str(value)
    if "://" not in url:
        raise ConfigError(f"KAOS_DATABASE_URL {url!r} is not a database URL "
                          "(e.g. sqlite:////var/lib/kaos/kaos.db or postgresql+psycopg://user:pw@host/db)")
    return url


def _choice(name: str, value: Any, choices) -> str:
    value = str(value).lower()
    if value not in choices:
        raise ConfigError(f"KAOS_{name.upper()} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _number(name: str, value: Any, kind: Callable, default=None, minimum=0):
    if value is None:
        return default
    if isinstance(value, str):
        try:
            parsed = kind(value)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ConfigError(f"KAOS_{name.upper()} must be {what}, not {value!r}") from None
    else:
        parsed = kind(value)
    if isinstance(parsed, float) and not math.isfinite(parsed):
        raise ConfigError(f"KAOS_{name.upper()} must be a finite number, not {value!r}")
    if parsed < minimum:
        raise ConfigError(f"KAOS_{name.upper()} must be at least {minimum}, not {value!r}")
    return parsed
