"""The backend's image (infrastructure/kubernetes/backend.Dockerfile) built on the Docker engine from this
checkout's wheel: it runs `kaos-backend serve` as its own user (10001, as the Deployment's securityContext asks),
with the SDKs a cluster needs, and answers the readiness probe the Deployment sends."""
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from kaos_backend import __version__
from tests.support.docker_engine import TEST_LABEL, build_image, published_address, remove_images, unique_tag

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "infrastructure" / "kubernetes" / "backend.Dockerfile"
DEPLOYMENT = ROOT / "infrastructure" / "kubernetes" / "base" / "deployment.yaml"

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def backend_image(docker_engine, base_image, dists, tmp_path_factory):
    """The image, built as the Dockerfile says: its context the folder of this checkout's wheel (the session's)."""
    context = tmp_path_factory.mktemp("backend-image")
    shutil.copy(dists["wheel"], context)
    assert [wheel.name for wheel in context.glob("*.whl")] == [f"kaos-{__version__}-py3-none-any.whl"]
    shutil.copy(DOCKERFILE, context / "Dockerfile")
    tag = unique_tag("backend")
    image, _ = build_image(docker_engine, context, tag, base_image)
    yield image
    remove_images(docker_engine, [tag])


def test_the_image_serves_the_api_as_its_own_user_with_the_cluster_s_sdks(docker_engine, backend_image):
    probe = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    versions = docker_engine.containers.run(
        backend_image.id, entrypoint=["python3", "-c"], remove=True, labels={TEST_LABEL: "true"},
        command=["import os, kubernetes, docker, psycopg, kaos_backend; print(os.getuid(), kaos_backend.__version__)"])
    assert versions.decode().split() == ["10001", __version__]
    container = docker_engine.containers.run(backend_image.id, detach=True, ports={"8080/tcp": ("127.0.0.1", None)},
                                             labels={TEST_LABEL: "true"})
    try:
        host, port = published_address(container)
        deadline = time.monotonic() + 120  # a bound against hanging: the backend's first start migrates its schema
        while True:
            try:
                with urllib.request.urlopen(f"http://{host}:{port}{probe['httpGet']['path']}", timeout=5) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                container.reload()
                assert container.status == "running", container.logs().decode(errors="replace")[-4000:]
                assert time.monotonic() < deadline, container.logs().decode(errors="replace")[-4000:]
                time.sleep(0.5)
        files = container.exec_run(["ls", "-ln", "/var/lib/kaos"]).output.decode()
        assert " 10001 10001 " in files and "kaos.db" in files  # its data directory, written as its user
    finally:
        container.remove(force=True)
