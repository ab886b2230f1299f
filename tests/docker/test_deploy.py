"""`kaos build deploy -c DOCKER` and `kaos destroy -c DOCKER` where the engine is missing something, with the real
CLI: no engine answers at deploy (one line, nothing started), the base image is not on the engine, and an engine
that is down at destroy (the backend stopped and the context removed all the same; a later destroy finishes)."""
import uuid
from pathlib import Path

import pytest

from kaos_backend.config import platform_id
from kaos_backend.images import labels
from kaos_cli.local_platform import pid_alive, workload_pids
from tests.support.backend import free_port
from tests.support.cli import assert_one_line_failure, kaos
from tests.support.docker_engine import TEST_LABEL
from tests.support.platform import LocalPlatform, wait_for


def _dead_socket(tmp_path: Path) -> str:
    return f"unix://{tmp_path / 'no-engine.sock'}"


def _backends_of(project: Path) -> list:
    """Processes whose command line names the project (a backend daemon started for it, its parts, watchers)."""
    return workload_pids(project)


def test_deploy_without_an_engine_is_one_line_and_starts_nothing(tmp_path):
    """No Docker engine needed: DOCKER_HOST names a socket nothing listens on."""
    project = tmp_path / "project"
    project.mkdir()
    dead = _dead_socket(tmp_path)
    result = kaos(project, "build", "deploy", "-c", "DOCKER", "-y", "--port", str(free_port()),
                  env={"DOCKER_HOST": dead})
    assert_one_line_failure(result)
    line = result.text.strip()
    assert line.startswith("Error - Deployment Unsuccessful while creating kaos DOCKER environment: "
                           f"no Docker engine answers at {dead} ("), line
    assert line.endswith("start one (scripts/start-dockerd.sh starts dockerd) or point DOCKER_HOST at its socket")
    assert not (project / ".kaos").exists()
    assert _backends_of(project) == []


@pytest.mark.docker
def test_deploy_without_the_base_image_says_how_to_make_it(docker_engine, tmp_path):
    missing = f"kaos-test-missing:{uuid.uuid4().hex[:8]}"
    result = kaos(tmp_path, "build", "deploy", "-c", "DOCKER", "-y", "--port", str(free_port()),
                  "--base-image", missing)
    assert_one_line_failure(result)
    assert (f"Error - Deployment Unsuccessful while creating kaos DOCKER environment: the base image {missing} of "
            "the builds is not on the Docker engine") in result.text
    assert "`kaos-backend base-image`" in result.text
    assert not (tmp_path / ".kaos").exists() and _backends_of(tmp_path) == []


@pytest.mark.docker
def test_destroy_while_the_engine_is_down_stops_the_backend_and_a_later_destroy_finishes(docker_engine, base_image,
                                                                                         tmp_path):
    platform = LocalPlatform(tmp_path / "project", cloud="DOCKER", deploy_options=["--base-image", base_image])
    platform.project.mkdir()
    platform.deploy()
    pid, data_dir = int(platform._context()["pid"]), platform.data_dir
    network = docker_engine.networks.create(  # as kaos could make one for the platform
        f"kaos-{platform_id(data_dir)}-net", labels={labels.MANAGED: "true", labels.PLATFORM: platform_id(data_dir),
                                                     TEST_LABEL: "true"})
    try:
        dead = _dead_socket(tmp_path)
        down = platform.kaos("destroy", "-c", "DOCKER", "-y", env={"DOCKER_HOST": dead})
        assert_one_line_failure(down)
        line = down.text.strip()
        assert line.startswith("Error - Destroy operation unsuccessful for kaos DOCKER environment: the backend is "
                               f"stopped and its context removed, but no Docker engine answers at {dead} ("), line
        assert line.endswith(f"so what kaos labelled {labels.PLATFORM}={platform_id(data_dir)} on it (containers, "
                             "images, networks, volumes) is still there - run `kaos destroy -c DOCKER` again once "
                             "the engine runs"), line
        wait_for(lambda: not pid_alive(pid), timeout=30, what="the backend to stop")
        assert _backends_of(data_dir) == []
        assert "No active builds found" in platform.kaos("build", "list").text
        network.reload()  # still there

        finished = platform.kaos("destroy", "-c", "DOCKER", "-y")
        assert finished.code == 0, finished
        assert finished.out.strip() == "Info - Successfully destroyed kaos environment"
        assert docker_engine.networks.list(filters={"label": f"{labels.PLATFORM}={platform_id(data_dir)}"}) == []
        assert not (platform.project / ".kaos" / "DOCKER").exists()
        assert platform.kaos("destroy", "-c", "DOCKER", "-y").text.strip() == \
            "Warning - kaos backend in DOCKER has not been deployed!"
    finally:
        import docker.errors

        platform.destroy()
        try:
            network.remove()
        except docker.errors.NotFound:  # removed by the destroy, as it should be
            pass
