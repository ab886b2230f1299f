"""What `kaos build deploy -c DOCKER` and `kaos destroy -c DOCKER` ask of the backend's side about the Docker engine,
as `kaos-backend` subcommands (the CLI never imports the backend, and needs no docker SDK of its own):

    kaos-backend docker-check [--base-image TAG]
        exit 0 when an engine answers (DOCKER_HOST, default its local socket) and has the base image the builds
        will use (TAG, else kaos's own, `kaos-base-python:bookworm`); else `Error - ...` and exit 1
    kaos-backend destroy-platform --data-dir D
        remove every container (killed first), image, network and volume that kaos labelled for the platform of
        data directory D (`io.kaos.platform=<platform id>`), and nothing else; exit 0 with one `Info -` line,
        1 with `Error - ...` naming what is left, or ENGINE_UNAVAILABLE (3) when no engine answers
"""
import argparse
import sys

from kaos_backend.images import labels
from kaos_backend.images.base_image import DEFAULT_TAG

ENGINE_UNAVAILABLE = 3
REMOVAL_TIMEOUT = 300  # seconds the engine may take over one removal (a big image on a slow disk)


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-image", default="", help=f"the base image the builds use (default {DEFAULT_TAG})")


def add_destroy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", required=True, help="the platform's data directory")


def check_command(args) -> int:
    """`kaos-backend docker-check`: the engine answers and has the base image."""
    from kaos_backend.executors import docker_client

    try:
        client = docker_client.answering_engine()
    except docker_client.EngineUnavailable as error:
        return _error(f"{error}: start one (scripts/start-dockerd.sh starts dockerd) or point DOCKER_HOST at its "
                      "socket")
    tag = args.base_image or DEFAULT_TAG
    try:
        client.images.get(tag)
    except docker_client.errors().ImageNotFound:
        how = ("make it with `kaos-backend base-image`" if tag == DEFAULT_TAG else
               f"load or pull it into the engine (`docker pull {tag}`), or make kaos's own with `kaos-backend "
               f"base-image`")
        return _error(f"the base image {tag} of the builds is not on the Docker engine at "
                      f"{docker_client.engine_address()}: {how}, or name another with --base-image")
    except Exception as error:  # noqa: BLE001 - the engine went away meanwhile: one line, not a traceback
        return _error(f"the Docker engine at {docker_client.engine_address()} failed to answer: "
                      f"{docker_client.first_line(error)}")
    finally:
        client.close()
    print(f"Info - the Docker engine at {docker_client.engine_address()} answers and has the base image {tag}",
          flush=True)
    return 0


def destroy_command(args) -> int:
    """`kaos-backend destroy-platform --data-dir D`: what `kaos destroy -c DOCKER` runs once the backend and its
    watchers are stopped."""
    from kaos_backend.config import platform_id
    from kaos_backend.executors import docker_client

    platform = platform_id(args.data_dir)
    label = f"{labels.PLATFORM}={platform}"
    try:
        client = docker_client.answering_engine(timeout=REMOVAL_TIMEOUT)
    except docker_client.EngineUnavailable as error:
        _error(f"{error}, so what kaos labelled {label} on it (containers, images, networks, volumes) is still "
               "there")
        return ENGINE_UNAVAILABLE
    try:
        removal = docker_client.remove_platform(client, platform)
    except Exception as error:  # noqa: BLE001 - the engine failed midway: one line, and the rest is still there
        return _error(f"the Docker engine at {docker_client.engine_address()} failed midway "
                      f"({docker_client.first_line(error)}), so part of what kaos labelled {label} is still there")
    finally:
        client.close()
    if removal.left:
        return _error(f"the Docker engine kept {len(removal.left)} of what kaos labelled {label}: "
                      + "; ".join(removal.left))
    print(f"Info - removed {removal.summary()} labelled {label}", flush=True)
    return 0


def _error(message: str) -> int:
    print(f"Error - {message}", file=sys.stderr, flush=True)
    return 1
