"""The base image on a real engine: kaos-labelled, reused, and a Debian whose python3, venv and pip work and
whose CA bundle holds every CA of the host's (also after update-ca-certificates runs in a build)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kaos_backend.images import base_image as base
from kaos_backend.images import ca_bundle, labels
from tests.support.backend import free_port
from tests.support.docker_engine import TEST_LABEL, build_image, remove_images, unique_tag

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
    assert before.labels[labels.BASE_IMAGE_RECIPE] == kaos_recipe.digest()
    assert before.labels[labels.BASE_IMAGE_SUITE] == "bookworm"
    assert before.labels[labels.BASE_IMAGE_PACKAGES].split(",") == list(base.PACKAGES)


def test_images_built_on_it_do_not_look_like_kaos_s(docker_engine, base_image, tmp_path):
    """Labels are inherited: the base image's must not make a user's own image look like kaos's (destroy)."""
    (tmp_path / "Dockerfile").write_text(f"FROM {base_image}\nRUN true\n")
    tag = unique_tag("built-on-base")
    try:
        image, _ = build_image(docker_engine, tmp_path, tag, base_image)
        assert not {labels.MANAGED, labels.KIND, labels.PLATFORM} & set(image.labels)
        assert not {labels.MANAGED, labels.KIND, labels.PLATFORM} & set(docker_engine.images.get(base_image).labels)
    finally:
        remove_images(docker_engine, [tag])


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


def tiny_tar() -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"hello"))
    return buffer.getvalue()


def test_kaos_backend_base_image_replaces_a_stale_one_and_then_reuses_it(docker_engine, base_image):
    """The whole making (debootstrap, the host's CAs, import) under a tag of the test's, where a stale image (no
    recipe label) stood: it is replaced and removed; a second run reuses the new image."""
    import docker.errors

    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("making a base image needs root and debootstrap")
    tag = unique_tag("base-image")
    repository, _, name = tag.partition(":")
    docker_engine.api.import_image(src=tiny_tar(), repository=repository, tag=name, changes=[f"LABEL {TEST_LABEL}=1"])
    stale = docker_engine.images.get(tag).id
    try:
        made = subprocess.run([KAOS_BACKEND, "base-image", "--tag", tag], capture_output=True, text=True,
                              timeout=900, stdin=subprocess.DEVNULL)
        assert made.returncode == 0, made.stdout + made.stderr
        lines = made.stdout.splitlines()
        assert lines[0].startswith("Info - debootstrap bookworm with python3, python3-venv, python3-pip")
        assert f"Info - removed the base image it replaced ({stale})" in lines
        assert lines[-1].startswith(f"Info - made the base image {tag} (sha256:")
        assert "(debootstrap " in lines[-1] and ", import " in lines[-1]
        with pytest.raises(docker.errors.ImageNotFound):
            docker_engine.images.get(stale)
        made_id = docker_engine.images.get(tag).id
        assert run(docker_engine, tag, "python3 -c 'import ssl, venv, ensurepip; print(42)'").strip() == "42"
        again = subprocess.run([KAOS_BACKEND, "base-image", "--tag", tag], capture_output=True, text=True,
                               timeout=120, stdin=subprocess.DEVNULL)
        assert again.stdout == f"Info - the base image {tag} is up to date ({made_id}): reused\n", again.stderr
    finally:
        remove_images(docker_engine, [tag])


def test_a_mirror_that_does_not_answer_is_one_error_line(docker_engine):
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("making a base image needs root and debootstrap")
    mirror = f"http://127.0.0.1:{free_port()}/debian"  # nothing listens there
    tag = unique_tag("base-image")
    result = subprocess.run([KAOS_BACKEND, "base-image", "--tag", tag, "--mirror", mirror], capture_output=True,
                            text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error - debootstrap of bookworm from {mirror} failed (exit 1): E: Failed getting "
                                    f"release file {mirror}/dists/bookworm/Release (its log: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not docker_engine.images.list(name=tag)  # this tag: another run's test tags share its repository
