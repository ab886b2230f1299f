"""The base image on a real engine: kaos-labelled, reused, and a Debian whose python3, venv and pip work and
whose CA bundle holds every CA of the host's (also after update-ca-certificates runs in a build)."""
import subprocess
import sys
from pathlib import Path

import pytest

from kaos_backend.images import base_image as base
from kaos_backend.images import ca_bundle, labels
from tests.support.docker_engine import TEST_LABEL

pytestmark = pytest.mark.docker
KAOS_BACKEND = str(Path(sys.executable).with_name("kaos-backend"))


@pytest.fixture
def kaos_recipe(base_image):
    if base_image != base.DEFAULT_TAG:
        pytest.skip(f"KAOS_BASE_IMAGE={base_image} is not kaos's own base image")
    return base.Recipe(tag=base_image, ca_bundle=ca_bundle.host_bundle_path())


def run(client, image: str, script: str) -> str:
    """The output of `sh -c script` in a throwaway container (fails the test on a non-zero exit)."""
    import docker.errors

    try:
        output = client.containers.run(image, ["sh", "-c", script], remove=True, labels={TEST_LABEL: "true"},
                                       stderr=True)
    except docker.errors.ContainerError as error:
        pytest.fail(f"{script!r} failed ({error.exit_status}): {error.stderr!r}")
    return output.decode(errors="replace")


def test_the_base_image_is_kaos_labelled_and_reused(docker_engine, kaos_recipe):
    before = docker_engine.images.get(kaos_recipe.tag)
    outcome = base.ensure_base_image(docker_engine, kaos_recipe)
    assert (outcome.built, outcome.image_id) == (False, before.id)
    assert before.labels[labels.MANAGED] == "true"
    assert before.labels[labels.KIND] == "base-image"
    assert labels.PLATFORM not in before.labels  # shared by every platform: no platform's destroy removes it
    assert before.labels[labels.BASE_IMAGE_RECIPE] == kaos_recipe.digest()


def test_kaos_backend_base_image_reuses_it(kaos_recipe):
    result = subprocess.run([KAOS_BACKEND, "base-image", "--tag", kaos_recipe.tag], capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Info - the base image {kaos_recipe.tag} is up to date (sha256:")
    assert "reused" in result.stdout and "debootstrap" not in result.stdout


def test_another_recipe_or_other_host_cas_are_not_reused(docker_engine, kaos_recipe, tmp_path):
    assert base.reusable_image(docker_engine, kaos_recipe) == docker_engine.images.get(kaos_recipe.tag).id
    more_packages = base.Recipe(tag=kaos_recipe.tag, packages=base.PACKAGES + ("curl",),
                                ca_bundle=kaos_recipe.ca_bundle)
    assert base.reusable_image(docker_engine, more_packages) is None
    other_cas = tmp_path / "other.crt"
    other_cas.write_bytes(kaos_recipe.ca_bundle.read_bytes() + b"\n")
    assert base.reusable_image(docker_engine, base.Recipe(tag=kaos_recipe.tag, ca_bundle=other_cas)) is None


def test_python3_python_venv_and_pip_work(docker_engine, base_image):
    output = run(docker_engine, base_image, "python3 --version && python --version && pip3 --version "
                                            "&& python3 -m venv /tmp/v && /tmp/v/bin/python -m pip --version")
    lines = output.splitlines()
    assert [line.split()[0] for line in lines] == ["Python", "Python", "pip", "pip"], output
    assert lines[3].endswith("(python 3.11)") and "/tmp/v/" in lines[3], output


def test_the_hosts_cas_are_trusted_also_after_update_ca_certificates(docker_engine, base_image):
    host_bundle = ca_bundle.host_bundle_path()
    if host_bundle is None:
        pytest.skip("this host has no CA bundle")
    bundle = run(docker_engine, base_image, "update-ca-certificates >/dev/null && cat " + ca_bundle.IMAGE_BUNDLE)
    assert ca_bundle.missing_certificates(host_bundle.read_bytes(), bundle.encode()) == []
    environment = run(docker_engine, base_image, "env")
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        assert f"{name}={ca_bundle.IMAGE_BUNDLE}" in environment.splitlines()
