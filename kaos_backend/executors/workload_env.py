"""What a workload sees inside its container, whatever runs the container (the docker and kubernetes executors):
kaos 1.x's paths (reference §6.1, §7.1, §7.2), so its bundles run unchanged, and the environment variables.

    train   `./train /pfs/out/<hex6>`, the data at /pfs/data/<name:hash5> (KAOS_TRAIN_DATA), the hyperparameters
            at /pfs/hyper (KAOS_TRAIN_HYPER), the output at /pfs/out/<hex6> (KAOS_TRAIN_OUTPUT)
    serve   `./serve`, listening on 0.0.0.0:8080 (HOST, PORT) as 1.x's nginx did

Every workload also gets PYTHONUNBUFFERED=1 (its output reaches the log as it is printed), its spec's `env`
(KAOS_JOB_ID, KAOS_WORKSPACE, ...), and of the backend's own environment only how to reach package indexes
(PASSED_ENV): nothing else of it, which may hold any secret. Pure functions: the caller reads os.environ.
"""
from typing import Dict, Mapping, Tuple

from kaos_backend.executors.base import WorkloadSpec

SERVE_PORT = 8080
DATA_ROOT = "/pfs/data"
HYPER_DIR = "/pfs/hyper"
OUT_ROOT = "/pfs/out"
# What of the backend's environment a workload gets: how to reach package indexes (the image has its own PATH,
# locale and CA bundle).
PASSED_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST")


def data_target(name: str) -> str:
    """Where a training's data is: /pfs/data/<name:hash5> (a name never holds a slash)."""
    return f"{DATA_ROOT}/{name.replace('/', '_') or 'data'}"


def output_target(hex6: str) -> str:
    """Where a training writes its output: /pfs/out/<hex6>."""
    return f"{OUT_ROOT}/{hex6}"


def train_targets(spec: WorkloadSpec) -> Tuple[str, str]:
    """(where the data is, where the output goes) of a train spec: data_target of its data's name (the first five
    characters of its ref when it has none), output_target of its output's hex6."""
    data_at = data_target(spec.data.name or spec.data.ref[:5])
    out_at = output_target(spec.output.name or spec.output.output_parts()[1])
    return data_at, out_at


def train_env(spec: WorkloadSpec) -> Dict[str, str]:
    """KAOS_TRAIN_DATA, KAOS_TRAIN_HYPER and KAOS_TRAIN_OUTPUT of a train spec."""
    data_at, out_at = train_targets(spec)
    return {"KAOS_TRAIN_DATA": data_at, "KAOS_TRAIN_HYPER": HYPER_DIR, "KAOS_TRAIN_OUTPUT": out_at}


def serve_env() -> Dict[str, str]:
    """Where `./serve` listens: every address of its container, port 8080."""
    return {"PORT": str(SERVE_PORT), "HOST": "0.0.0.0"}


def passed_env(environ: Mapping[str, str]) -> Dict[str, str]:
    """The PASSED_ENV variables that `environ` (the backend's environment) sets."""
    return {key: environ[key] for key in PASSED_ENV if key in environ}


def workload_env(spec: WorkloadSpec, staged: Mapping[str, str], environ: Mapping[str, str]) -> Dict[str, str]:
    """The whole environment of `spec`'s workload: `passed_env(environ)`, PYTHONUNBUFFERED=1, the spec's env, then
    `staged` (train_env / serve_env: where its files are), each later one winning."""
    env = passed_env(environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(spec.env)
    env.update(staged)
    return env
