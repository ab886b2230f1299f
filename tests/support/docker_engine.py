"""The Docker engine for tests, as shared fixtures (registered for the whole suite in tests/conftest.py):

    docker_engine   a docker.DockerClient on the engine DOCKER_HOST names (default /var/run/docker.sock)
    base_image      the tag of the builds' base image: KAOS_BASE_IMAGE, else kaos's debootstrapped one
                    (`kaos-base-python:bookworm`), made here when missing (root and debootstrap needed)
    template_layers a template bundle's image built once a session, so that later builds of it reuse its layers

Without an engine (or without what the base image needs) the test is skipped, and FAILS when CI is set: CI
must run every Docker test. `scripts/start-dockerd.sh` starts an engine; `.ci/run` does so.
"""
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

IN_CI = bool(os.environ.get("CI"))
# Builds install packages with pip, which can be silent for minutes (a big wheel unpacking): a read timeout
# of the SDK's default 60 s would cut such a build.
CLIENT_TIMEOUT = 900
TEST_LABEL = "io.kaos.test"  # on what the tests make, beside kaos's own labels, so leftovers can be found


def unavailable(reason: str):
    """Skip the test for want of `reason`; in CI fail it instead."""
    if IN_CI:
        pytest.fail(f"CI must run the Docker tests, but {reason}", pytrace=False)
    pytest.skip(reason)


def engine_client():
    """A docker.DockerClient that answered a ping, or None with why not."""
    try:
        import docker
    except ImportError:
        return None, "the docker SDK is not installed (pip install 'kaos[docker]')"
    try:
        client = docker.from_env(timeout=CLIENT_TIMEOUT)
        client.ping()
    except docker.errors.DockerException as error:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return None, (f"no Docker engine answers at {where} ({str(error).splitlines()[0][:200]}); "
                      "start one with scripts/start-dockerd.sh")
    return client, None


@pytest.fixture(scope="session")
def docker_engine():
    client, why_not = engine_client()
    if client is None:
        unavailable(why_not)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_engine) -> str:
    import docker.errors

    from kaos_backend.images import base_image as base
    from kaos_backend.images import ca_bundle

    tag = os.environ.get("KAOS_BASE_IMAGE") or base.DEFAULT_TAG
    if tag != base.DEFAULT_TAG:
        try:
            docker_engine.images.get(tag)
        except docker.errors.ImageNotFound:
            unavailable(f"KAOS_BASE_IMAGE={tag} is not on the engine (no registry to pull it from)")
        return tag
    recipe = base.Recipe(tag=tag, ca_bundle=ca_bundle.host_bundle_path())
    try:
        base.ensure_base_image(docker_engine, recipe)
    except base.BaseImageError as error:
        unavailable(f"the base image {tag} is missing and cannot be made: {error}")
    return tag


def unique_tag(name: str) -> str:
    return f"kaos-test-{name}:{uuid.uuid4().hex[:8]}"


def build_image(client, context: Path, tag: str, base_image: str) -> Tuple[object, List[str]]:
    """`docker build --build-arg BASE_IMAGE=<base_image> --network host -t <tag> <context>` (the layer cache
    used, nothing pulled); the image and the build's output lines. Fails the test with the output when the
    build fails."""
    output: List[str] = []
    error: Optional[str] = None
    for chunk in client.api.build(path=str(context), tag=tag, buildargs={"BASE_IMAGE": base_image},
                                  network_mode="host", rm=True, forcerm=True, pull=False, decode=True,
                                  labels={TEST_LABEL: "true"}):
        if "stream" in chunk:
            output.extend(chunk["stream"].splitlines())
        if "error" in chunk:
            error = chunk["error"]
    if error:
        pytest.fail(f"docker build of {context} failed: {error}\n" + "\n".join(output[-60:]), pytrace=False)
    return client.images.get(tag), output


def remove_images(client, tags: List[str]) -> None:
    import docker.errors

    for tag in tags:
        try:
            client.images.remove(tag, force=True)
        except docker.errors.APIError:
            pass


def wait_for_exit(container, timeout: float = 600) -> Dict:
    """The container's State once it stopped (a bound against hanging, not a speed check)."""
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        if container.status in ("exited", "dead"):
            return container.attrs["State"]
        if time.monotonic() > deadline:
            pytest.fail(f"container {container.name} still {container.status} after {timeout} s:\n"
                        + container.logs().decode(errors="replace")[-4000:], pytrace=False)
        time.sleep(0.2)


def published_address(container, port: str = "8080/tcp", timeout: float = 30) -> Tuple[str, int]:
    """(host, port) where the engine published the container's `port` (bound to 127.0.0.1 by the test)."""
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(port)
        if bindings:
            return bindings[0]["HostIp"], int(bindings[0]["HostPort"])
        if time.monotonic() > deadline:
            pytest.fail(f"container {container.name} has no published {port}", pytrace=False)
        time.sleep(0.2)


TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.fixture(scope="session")
def template_layers(docker_engine, base_image, tmp_path_factory):
    """A function of a template's bundle folder under templates/ (its Dockerfile and model/, e.g.
    "mnist/model-train/mnist", "notebook/base"): builds that bundle's image on the base image once a session, under
    a test tag kept until the session ends, and returns the tag.

    A test that is about to build the same bundle (through a platform, or itself) calls it first: its build then
    takes the installed packages' layer from the engine's layer cache (same base image, same steps up to `pip
    install -r requirements.txt`, same requirements) instead of downloading and installing them again, and so does
    every later build of it in the session, whatever removed the images those builds made. What a build proves
    (the steps run, the image works) is unchanged: only pip's work is done once."""
    built: Dict[str, str] = {}

    def ensure(bundle: str) -> str:
        if bundle not in built:
            context = tmp_path_factory.mktemp("template-layers") / "context"
            shutil.copytree(TEMPLATES / bundle / "model", context)
            shutil.copy(TEMPLATES / bundle / "Dockerfile", context / "Dockerfile")
            tag = unique_tag("layers-" + bundle.split("/")[0])
            build_image(docker_engine, context, tag, base_image)
            built[bundle] = tag
        return built[bundle]
    yield ensure
    remove_images(docker_engine, list(built.values()))
