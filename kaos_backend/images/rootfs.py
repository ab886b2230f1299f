"""A minimal Debian root filesystem for the base image: debootstrap, the host's CAs, no caches or docs.

Needs root (debootstrap and chroot) and Debian's `debootstrap` package; reaches only a Debian mirror.
"""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from kaos_backend.images import ca_bundle

# Left out of the image: package caches and lists (apt-get update fills them again), documentation.
SLIMMED = ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*", "usr/share/doc/*",
           "usr/share/man/*", "usr/share/info/*")


class RootfsError(RuntimeError):
    """The root filesystem could not be made; the message says which step failed and why, in one line or a few."""


def debootstrap(target: Path, suite: str, mirror: str, packages: Sequence[str], log_path: Path) -> None:
    """`debootstrap --variant=minbase --include=<packages> <suite> <target> <mirror>` (Essential packages, apt
    and the packages asked for with their dependencies, not their recommendations), its output in `log_path`.
    Raises RootfsError when it is missing, when this is not root, or when it fails (with its last lines)."""
    if os.geteuid() != 0:
        raise RootfsError("debootstrap needs root (it creates device nodes and runs chroot)")
    if shutil.which("debootstrap") is None:
        raise RootfsError("debootstrap is not installed: apt-get install debootstrap")
    command = ["debootstrap", "--variant=minbase", "--include=" + ",".join(packages), suite, str(target), mirror]
    with open(log_path, "wb") as log_file:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        kept = Path(tempfile.gettempdir()) / "kaos-base-image-debootstrap.log"
        with open(kept, "wb") as copy:
            for path in (log_path, target / "debootstrap" / "debootstrap.log"):
                if path.is_file():
                    copy.write(path.read_bytes())
        raise RootfsError(f"debootstrap of {suite} from {mirror} failed (exit {result.returncode}): "
                          f"{_last_error(kept)} (its log: {kept})")


def trust_host_cas(rootfs: Path, host_bundle: Path, log: Callable[[str], None]) -> int:
    """Make the root filesystem trust every CA of `host_bundle`: those Debian's list lacks become local CAs,
    then the image's own update-ca-certificates rebuilds its bundle and hash links. Returns how many were
    added. Raises RootfsError when update-ca-certificates fails or the bundle still lacks one of them."""
    image_bundle = rootfs / ca_bundle.IMAGE_BUNDLE.lstrip("/")
    try:
        image_pem = image_bundle.read_bytes() if image_bundle.is_file() else b""
        missing = ca_bundle.missing_certificates(host_bundle.read_bytes(), image_pem)
    except (OSError, ca_bundle.CABundleError) as error:
        raise RootfsError(f"cannot read the host's CA bundle {host_bundle}: {error}") from None
    if not missing:
        return 0
    ca_bundle.add_local_cas(rootfs, missing)
    result = subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RootfsError("update-ca-certificates in the new root filesystem failed: "
                          + (result.stderr or result.stdout).strip()[-2000:])
    if ca_bundle.missing_certificates(host_bundle.read_bytes(), image_bundle.read_bytes()):
        raise RootfsError("update-ca-certificates left some of the host's CAs out of the image's bundle")
    log(f"added {len(missing)} CA{'' if len(missing) == 1 else 's'} of the host's bundle {host_bundle} "
        "that Debian's list lacks")
    return len(missing)


def slim(rootfs: Path) -> None:
    """Remove package caches, package lists and documentation (about 100 MB of a 300 MB minbase)."""
    for pattern in SLIMMED:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _last_error(path: Path) -> str:
    """debootstrap's last `E:` line (its reason), else its last line."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    errors = [line for line in lines if line.startswith("E:")]
    return (errors or lines or ["no output"])[-1]
