"""The DOCKER platform: the LOCAL platform's backend daemon (local_platform.py), with `KAOS_EXECUTOR=docker`, so
that its builds, trainings and endpoints run on the Docker engine. What it needs to know of the engine it asks the
backend's side, as `kaos-backend` subcommands (kaos_backend/docker_platform.py): `docker-check` before a deploy,
`destroy-platform` at a destroy.

When a destroy cannot reach the engine, the backend is stopped and the context removed all the same, and
`.kaos/DOCKER/leftovers` keeps the data directory whose platform id labels what is left, so that `kaos destroy -c
DOCKER` can finish once the engine runs."""
import importlib.util
import os
import subprocess
from pathlib import Path
from typing import List, NamedTuple, Optional

from kaos_cli import local_platform

CONTEXT = "DOCKER"
LEFTOVERS = "leftovers"
CHECK_TIMEOUT = 60.0      # seconds for `kaos-backend docker-check` (it gives the engine 5)
DESTROY_TIMEOUT = 900.0   # seconds for `kaos-backend destroy-platform` (removing many images takes a while)
ENGINE_UNAVAILABLE = 3    # destroy-platform's exit status when no engine answers


class Removal(NamedTuple):
    """How `remove_engine_objects` went: `problem` None when everything is gone (`info` then says what was
    removed); else what is left and why, with `engine_down` when no engine answered at all."""
    problem: Optional[str]
    engine_down: bool
    info: Optional[str]


def sdk_missing() -> bool:
    """Is the docker SDK, which the backend's docker executor needs, missing (not imported to find out)?"""
    try:
        return importlib.util.find_spec("docker") is None
    except (ImportError, ValueError):
        return True


def backend_environment(base_image: Optional[str]) -> dict:
    """The environment a DOCKER backend gets beyond the CLI's: its executor, and the builds' base image (the
    `--base-image` option, else KAOS_BASE_IMAGE when set)."""
    environment = {"KAOS_EXECUTOR": "docker"}
    tag = base_image or os.environ.get("KAOS_BASE_IMAGE")
    if tag:
        environment["KAOS_BASE_IMAGE"] = tag
    return environment


def engine_problem(base_image: Optional[str]) -> Optional[str]:
    """None when a Docker engine answers and has the base image of the builds (`base_image`, else kaos's own);
    else why not, in one line."""
    args = ["docker-check"] + (["--base-image", base_image] if base_image else [])
    code, text = _backend(args, CHECK_TIMEOUT)
    return None if code == 0 else _error_line(text, "docker-check", code)


def remove_engine_objects(data_dir) -> Removal:
    """Remove what kaos labelled on the engine for the platform of `data_dir` (containers, images, networks,
    volumes): run once the backend and its watchers are stopped."""
    code, text = _backend(["destroy-platform", "--data-dir", str(data_dir)], DESTROY_TIMEOUT)
    if code == 0:
        info = next((line for line in text.splitlines() if line.startswith("Info - ")), None)
        return Removal(None, False, info[len("Info - "):] if info else None)
    return Removal(_error_line(text, "destroy-platform", code), code == ENGINE_UNAVAILABLE, None)


def write_leftovers(home: Path, data_dir) -> None:
    """Remember, in the otherwise emptied `home`, the data directory whose platform's objects are still on the
    engine."""
    home.mkdir(parents=True, exist_ok=True)
    (home / LEFTOVERS).write_text(f"{os.path.realpath(str(data_dir))}\n", encoding="utf-8",
                                  errors="surrogateescape")  # any path, as the file system spells it


def read_leftovers(home: Path) -> Optional[str]:
    """The data directory an unfinished destroy left on the engine, or None."""
    try:
        return (home / LEFTOVERS).read_text(encoding="utf-8", errors="surrogateescape").strip() or None
    except OSError:
        return None


def _backend(args: List[str], timeout: float):
    """Run `kaos-backend <args>`: its exit status and its output (stdout then stderr)."""
    try:
        done = subprocess.run(local_platform.backend_argv_for(*args), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 1, f"Error - kaos-backend {args[0]} did not finish within {timeout:.0f} s"
    except OSError as error:
        return 1, f"Error - cannot run kaos-backend {args[0]}: {error}"
    return done.returncode, done.stdout + done.stderr


def _error_line(text: str, command: str, code: int) -> str:
    """The last `Error - ` line of a subcommand's output without its prefix, else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("Error - "):
            return line[len("Error - "):]
    return lines[-1] if lines else f"kaos-backend {command} ended with exit status {code}"
