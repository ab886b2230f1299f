"""The base image of kaos's builds when no container registry is reachable (`KAOS_BASE_IMAGE` names it).

A minimal Debian (debootstrap from a Debian mirror, the only thing it downloads) with python3, venv, pip and
ca-certificates, trusting the host's CA bundle, imported into the Docker engine as `kaos-base-python:bookworm`
and labelled `io.kaos.base-image.*` (kaos_backend.images.labels). Made once: `ensure_base_image` first looks for
the tag on the engine and reuses it while its recipe label matches (same packages, same host CAs); only then does
it debootstrap (about a minute).

    kaos-backend base-image [--tag T] [--rebuild]      (or: python -m kaos_backend.images.base_image)

Like `python:3.11-slim`, the image runs `python3` (and `python`: python-is-python3), and `pip install` installs
into it (PIP_BREAK_SYSTEM_PACKAGES=1: a container's Python is nobody else's, as in the official images); pip,
requests and OpenSSL read the image's CA bundle (PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE), which holds the
host's CAs.
"""
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Tuple

from kaos_backend.images import ca_bundle, labels, rootfs

DEFAULT_TAG = "kaos-base-python:bookworm"
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates", "python-is-python3")
# Bump when the way the image is made changes (not its inputs, which the recipe label already covers).
RECIPE_VERSION = 2
IMPORT_CHUNK = 1024 * 1024
IMPORT_TIMEOUT = 600  # seconds the engine may take to answer an import (it unpacks the whole layer first)


class BaseImageError(RuntimeError):
    """The base image cannot be made or checked; the message says why, for one `Error - ...` line."""


@dataclass(frozen=True)
class Recipe:
    """What the base image is made of. `ca_bundle` is the host's CA file (None: Debian's CAs only)."""
    tag: str = DEFAULT_TAG
    suite: str = DEFAULT_SUITE
    mirror: str = DEFAULT_MIRROR
    packages: Tuple[str, ...] = PACKAGES
    ca_bundle: Optional[Path] = None

    def digest(self) -> str:
        """sha256 (hex) of everything that changes the image: the suite, the packages, the host's CA bundle
        (its bytes) and RECIPE_VERSION. The mirror and the tag do not change what is inside."""
        ca_bytes = self.ca_bundle.read_bytes() if self.ca_bundle else b""
        described = json.dumps({"version": RECIPE_VERSION, "suite": self.suite, "packages": list(self.packages),
                                "ca_bundle": hashlib.sha256(ca_bytes).hexdigest()}, sort_keys=True)
        return hashlib.sha256(described.encode()).hexdigest()

    def image_labels(self) -> Dict[str, str]:
        """Only the base image's own labels: images built FROM it inherit them (see kaos_backend.images.labels)."""
        return {labels.BASE_IMAGE_SUITE: self.suite, labels.BASE_IMAGE_PACKAGES: ",".join(self.packages),
                labels.BASE_IMAGE_RECIPE: self.digest()}


@dataclass
class Outcome:
    """What `ensure_base_image` did: `built` False when the image was reused; timings in seconds."""
    tag: str
    image_id: str
    built: bool
    timings: Dict[str, float] = field(default_factory=dict)


def ensure_base_image(client, recipe: Recipe, rebuild: bool = False, workdir: Optional[str] = None,
                      log: Callable[[str], None] = lambda line: None) -> Outcome:
    """The base image of `recipe` on the engine of `client` (a docker.DockerClient): reused when its tag is
    there with the same recipe label (one inspect), else made (debootstrap, the host's CAs, import) under a lock
    so that two callers make it once. `workdir` holds the root filesystem meanwhile (default /var/tmp).
    Raises BaseImageError (engine errors included)."""
    import docker.errors

    try:
        reusable = None if rebuild else reusable_image(client, recipe)
        if reusable:
            return Outcome(recipe.tag, reusable, built=False)
        with _lock(recipe.tag):
            reusable = None if rebuild else reusable_image(client, recipe)  # made by another caller meanwhile
            if reusable:
                return Outcome(recipe.tag, reusable, built=False)
            replaced = _image_id(client, recipe.tag)
            outcome = _build(client, recipe, workdir, log)
            if replaced and replaced != outcome.image_id:
                _remove_if_unused(client, replaced, log)
            return outcome
    except docker.errors.DockerException as error:
        raise BaseImageError(f"the Docker engine refused: {error}") from None


def reusable_image(client, recipe: Recipe) -> Optional[str]:
    """The id of the image tagged `recipe.tag` when its recipe label matches, else None."""
    import docker.errors

    try:
        image = client.images.get(recipe.tag)
    except docker.errors.ImageNotFound:
        return None
    if (image.labels or {}).get(labels.BASE_IMAGE_RECIPE) != recipe.digest():
        return None
    return image.id


def _image_id(client, tag: str) -> Optional[str]:
    import docker.errors

    try:
        return client.images.get(tag).id
    except docker.errors.ImageNotFound:
        return None


def _remove_if_unused(client, image_id: str, log: Callable[[str], None]) -> None:
    """Remove the base image a new one replaced, unless a container or an image built on it still uses it."""
    import docker.errors

    try:
        client.images.remove(image_id)
        log(f"removed the base image it replaced ({image_id})")
    except docker.errors.APIError as error:
        log(f"kept the base image it replaced ({image_id}): {error.explanation or error}")


def _build(client, recipe: Recipe, workdir: Optional[str], log: Callable[[str], None]) -> Outcome:
    timings = {}
    work = Path(tempfile.mkdtemp(prefix="kaos-base-image-", dir=workdir or _default_workdir()))
    try:
        target = work / "rootfs"
        log(f"debootstrap {recipe.suite} with {', '.join(recipe.packages)} from {recipe.mirror} into {target}")
        started = time.monotonic()
        rootfs.debootstrap(target, recipe.suite, recipe.mirror, recipe.packages, work / "debootstrap.log")
        if recipe.ca_bundle:
            rootfs.trust_host_cas(target, recipe.ca_bundle, log)
        rootfs.slim(target)
        timings["debootstrap"] = time.monotonic() - started
        log(f"importing the root filesystem into the Docker engine as {recipe.tag}")
        started = time.monotonic()
        image_id = _import(client, target, recipe)
        timings["import"] = time.monotonic() - started
    except rootfs.RootfsError as error:
        raise BaseImageError(str(error)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Outcome(recipe.tag, image_id, built=True, timings=timings)


def _import(client, target: Path, recipe: Recipe) -> str:
    """Stream `tar` of the root filesystem into the engine's import (no tarball on disk); the image's id."""
    repository, _, tag = recipe.tag.rpartition(":") if ":" in recipe.tag.split("/")[-1] else (recipe.tag, "", "")
    tar = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "-C", str(target), "-cf", "-", "."],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        chunks = iter(lambda: tar.stdout.read(IMPORT_CHUNK), b"")
        answer = client.api.import_image(src=chunks, repository=repository, tag=tag or None,
                                         changes=_image_changes(recipe), stream_src=True)
    finally:
        tar.stdout.close()
        error = tar.stderr.read().decode(errors="replace").strip()
        tar.stderr.close()
        if tar.wait() != 0:
            raise BaseImageError(f"tar of the root filesystem failed: {error[-2000:]}")
    status = json.loads(answer.strip().splitlines()[-1]) if isinstance(answer, str) else answer
    if isinstance(status, dict) and status.get("error"):
        raise BaseImageError(f"the engine refused the import: {status['error']}")
    return client.images.get(recipe.tag).id


def _image_changes(recipe: Recipe):
    """The Dockerfile instructions `docker import --change` applies: environment, command, labels."""
    environment = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "PIP_BREAK_SYSTEM_PACKAGES": "1",
        "PIP_CERT": ca_bundle.IMAGE_BUNDLE,
        "REQUESTS_CA_BUNDLE": ca_bundle.IMAGE_BUNDLE,
        "SSL_CERT_FILE": ca_bundle.IMAGE_BUNDLE,
    }
    changes = [f"ENV {name}={value}" for name, value in environment.items()]
    changes.append('CMD ["python3"]')
    changes += [f"LABEL {name}={json.dumps(value)}" for name, value in recipe.image_labels().items()]
    return changes


def _default_workdir() -> Optional[str]:
    """/var/tmp (on disk where /tmp may be memory) when writable, else the system's temporary directory."""
    return "/var/tmp" if os.access("/var/tmp", os.W_OK) else None


@contextmanager
def _lock(tag: str) -> Iterator[None]:
    path = Path(tempfile.gettempdir()) / ("kaos-base-image-" + hashlib.sha256(tag.encode()).hexdigest()[:12] + ".lock")
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
