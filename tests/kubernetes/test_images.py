"""The kubernetes executor's images built by a Docker engine (KAOS_IMAGE_BUILDER=docker, the default): the docker
executor's build of the bundle's Dockerfile, named `<registry>/build-train-<ws>:<hash5>` and pushed there by the
build's watcher when KAOS_REGISTRY is set (a registry that cannot be reached fails the build with the engine's
words, and such an image is not ready: the next build pushes it), used by name without a registry (MINIKUBE with
minikube's docker-env)."""
import io
import time
import zipfile

import pytest

from kaos_backend.config import Config
from kaos_backend.executors import registry
from kaos_backend.executors.base import Artifact, WorkloadSpec
from kaos_backend.images import labels
from kaos_backend.storage import BlobStore
from tests.support.backend import free_port
from tests.support.container_registry import tags

pytestmark = pytest.mark.docker
DOCKERFILE = "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\nWORKDIR /opt/program\nCOPY . .\n"
WAIT = 600.0   # a bound against hanging (a build on a busy engine), never a speed claim


def build_spec(data_dir) -> WorkloadSpec:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bundle/Dockerfile", DOCKERFILE)
        archive.writestr("bundle/model/requirements.txt", "")
    buffer.seek(0)
    digest = BlobStore(data_dir / "blobs").put_stream(buffer).digest
    job = "b" * 32
    return WorkloadSpec(job_id=job, kind="build", log=f"jobs/{job}", preamble=[f"processing job {job}"],
                        source=Artifact(Artifact.BUNDLE, digest, "bundle", f"bundle:{digest[:5]}"),
                        requirements=["requirements.txt"], image_name=f"build-train-kube:{digest[:5]}")


def built(executor) -> int:
    deadline = time.monotonic() + WAIT
    while executor.poll() is None:
        assert time.monotonic() < deadline, "the build did not end"
        time.sleep(0.2)
    return executor.poll()


@pytest.fixture
def images(docker_engine):
    made = []
    yield made
    for image in made:
        try:
            docker_engine.images.remove(image, force=True)
        except Exception:  # noqa: BLE001 - not built
            pass


def test_with_a_registry_the_image_is_named_for_it_and_pushed(tmp_path, base_image, images):
    registry_address = f"127.0.0.1:{free_port()}"  # nothing listens: the push fails
    config = Config.from_env({}, data_dir=tmp_path / "data", executor="kubernetes", image_builder="docker",
                             registry=registry_address, base_image=base_image)
    spec = build_spec(config.data_dir)
    executor = registry.make_executor(config)
    image = executor.build(spec)
    images.append(image)
    assert image == f"{registry_address}/{spec.image_name}" == registry.make_executor(config).image_for(spec)
    assert built(executor) != 0
    assert executor.reason().startswith("the image could not be pushed to its registry: "), executor.reason()
    log = [line.split("] ", 1)[1] for line in executor.logs()]
    assert f"kaos: pushing the image {image}" in log
    assert not registry.make_executor(config).is_image_ready(image)  # built, not pushed: built (and pushed) again


def test_without_a_registry_the_image_stays_on_the_engine_by_its_name(tmp_path, base_image, images):
    config = Config.from_env({}, data_dir=tmp_path / "data", executor="kubernetes", image_builder="docker",
                             base_image=base_image)
    spec = build_spec(config.data_dir)
    executor = registry.make_executor(config)
    image = executor.build(spec)
    images.append(image)
    assert image == spec.image_name
    assert built(executor) == 0, list(executor.logs())
    assert registry.make_executor(config).is_image_ready(image)
    assert not any("pushing" in line for line in executor.logs())


def test_with_a_real_registry_the_image_is_pushed_whole_and_counts_as_built(tmp_path, base_image, images,
                                                                           container_registry, docker_engine):
    """KAOS_REGISTRY names a real registry (Debian's docker-registry on 127.0.0.1): the build pushes the image
    there, the registry lists its tag, the image counts as built, and an engine without it pulls it back whole
    (as a node would). Once the engine that built it no longer has it, it is not built (it is built again)."""
    config = Config.from_env({}, data_dir=tmp_path / "data", executor="kubernetes", image_builder="docker",
                             registry=container_registry, base_image=base_image)
    spec = build_spec(config.data_dir)
    executor = registry.make_executor(config)
    image = executor.build(spec)
    images.append(image)
    assert image == f"{container_registry}/{spec.image_name}"
    assert built(executor) == 0, list(executor.logs())
    log = [line.split("] ", 1)[1] for line in executor.logs()]
    assert f"kaos: pushing the image {image}" in log
    repository, tag = spec.image_name.split(":")
    assert tags(container_registry, repository) == [tag]
    assert registry.make_executor(config).is_image_ready(image)

    docker_engine.images.remove(image, force=True)
    assert not registry.make_executor(config).is_image_ready(image)  # this engine builds it again
    pulled = docker_engine.images.pull(image)
    assert image in pulled.tags
    assert pulled.labels.get(labels.KIND) == "build-train"  # the image kaos built, its labels with it
