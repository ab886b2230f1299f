"""The mount points fake kubelets make on this machine, shared by every fake cluster running on it.

A container's volumeMount is a bind mount at its mountPath inside the container's own mount namespace (launch.py);
a mountPath missing on this machine (`/pfs/out`, `/kaos/...`) is made first, an empty directory. Several fake
clusters run at once (one per pytest-xdist worker, each a process of its own), so a mount point one cluster made
can be in use by another's containers, and removing a directory that is a mount point in another mount namespace
detaches that mount there (rmdir(2), Linux >= 3.18): the other's training then polls an empty, deleted `/pfs/out`
and never ends. So the mount points made are written in a registry of the machine (`REGISTRY`, changed under an
flock) where every live cluster holds a place, and the last cluster to let go removes them.
"""
import fcntl
import os
import tempfile
import uuid
from contextlib import contextmanager
from typing import Iterator

import psutil

REGISTRY = os.path.join(tempfile.gettempdir(), "kubefake-mount-points")


class MountPoints:
    """One cluster's hold on the machine's mount points: `make` a missing one, `release` at its stop."""

    def __init__(self, registry: str = None):
        self.registry = registry or REGISTRY
        self.holder = os.path.join(self.registry, "holders", f"{os.getpid()}.{uuid.uuid4().hex}")
        with self._locked():
            open(self.holder, "w").close()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(os.path.join(self.registry, "holders"), exist_ok=True)
        with open(os.path.join(self.registry, "lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def make(self, path: str) -> None:
        """Make the directory `path` and every missing level above it, each written in the registry."""
        with self._locked():
            missing = []
            level = path
            while not os.path.exists(level):
                missing.append(level)
                level = os.path.dirname(level)
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(self.registry, "made"), "a") as made:
                made.writelines(f"{level}\n" for level in missing)

    def release(self) -> None:
        """Let go; the last live holder removes the empty mount points made (deepest first; one something else
        filled stays). Holders of processes that died without letting go do not count."""
        with self._locked():
            if not os.path.exists(self.holder):
                return   # let go already
            os.unlink(self.holder)
            holders = os.path.join(self.registry, "holders")
            for name in os.listdir(holders):
                if not psutil.pid_exists(int(name.split(".", 1)[0])):
                    os.unlink(os.path.join(holders, name))
            if os.listdir(holders):
                return
            made = os.path.join(self.registry, "made")
            paths = set(open(made).read().split()) if os.path.exists(made) else set()
            for path in sorted(paths, key=lambda p: p.count("/"), reverse=True):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            open(made, "w").close()

