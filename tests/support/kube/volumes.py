"""A pod's volumes on this machine, and where each container sees them.

    emptyDir               a directory of the pod's own (`<cluster dir>/pods/<uid>/volumes/<name>`), gone with it
    secret / configMap     a directory of the pod's own holding the keys as files (`items` picks and renames)
    hostPath               the path itself
    persistentVolumeClaim  a directory per claim (`<cluster dir>/claims/<namespace>/<claim>`) that outlives pods

A volumeMount is a bind mount of that directory (or its `subPath`) at `mountPath` inside the container's own
mount namespace (launch.py), read-only with `readOnly`. A mountPath missing on this machine is made (an empty
directory) so that it can be mounted over (mount_points.py: removed when the last cluster on the machine stops).
"""
import base64
import os
import shutil
from typing import List

from .containers import ConfigError
from .kinds import CONFIGMAPS, SECRETS
from .mount_points import MountPoints


class Volumes:
    def __init__(self, store, root: str, mount_points: MountPoints):
        self.store = store
        self.root = root
        self.mount_points = mount_points   # where a missing mountPath is made, shared with other clusters

    def pod_dir(self, pod: dict) -> str:
        return os.path.join(self.root, "pods", pod["metadata"]["uid"])

    def prepare(self, pod: dict) -> None:
        """Make the pod's volumes. Raises ConfigError (a Secret or ConfigMap that does not exist, a type not
        modelled) in the words of the kubelet's FailedMount event."""
        for volume in pod["spec"].get("volumes") or []:
            path = self.path(pod, volume["name"])
            if "emptyDir" in volume or "persistentVolumeClaim" in volume:
                os.makedirs(path, exist_ok=True)
            elif "secret" in volume or "configMap" in volume:
                self._files(pod, volume, path)
            elif "hostPath" not in volume:
                raise ConfigError(f'MountVolume.SetUp failed for volume "{volume["name"]}" : the fake kubelet does '
                                  f"not model volumes of type {sorted(k for k in volume if k != 'name')}")

    def _files(self, pod: dict, volume: dict, path: str) -> None:
        secret = "secret" in volume
        source = volume["secret" if secret else "configMap"]
        name = source.get("secretName" if secret else "name")
        obj = self.store.find(SECRETS if secret else CONFIGMAPS, pod["metadata"]["namespace"], name)
        if obj is None:
            if source.get("optional"):  # mounted all the same, empty, as a kubelet does
                os.makedirs(path, exist_ok=True)
                return
            raise ConfigError(f'MountVolume.SetUp failed for volume "{volume["name"]}" : '
                              f'{"secret" if secret else "configmap"} "{name}" not found')
        data = {k: base64.b64decode(v) if secret else v.encode() for k, v in (obj.get("data") or {}).items()}
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        os.makedirs(path, exist_ok=True)
        for item in items:
            target = os.path.join(path, item["path"])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as file:
                file.write(data.get(item["key"], b""))

    def path(self, pod: dict, name: str) -> str:
        volume = next((v for v in pod["spec"].get("volumes") or [] if v["name"] == name), None)
        if volume is None:
            raise ConfigError(f'volumeMount "{name}" names no volume of the pod')
        if "hostPath" in volume:
            return volume["hostPath"]["path"]
        if "persistentVolumeClaim" in volume:
            return os.path.join(self.root, "claims", pod["metadata"]["namespace"],
                                volume["persistentVolumeClaim"]["claimName"])
        return os.path.join(self.pod_dir(pod), "volumes", name)

    def mounts(self, pod: dict, container: dict) -> List[list]:
        """[host directory, mountPath, read only] for launch.py, parents before children."""
        mounts = []
        for mount in sorted(container.get("volumeMounts") or [], key=lambda m: m["mountPath"].count("/")):
            source = self.path(pod, mount["name"])
            if mount.get("subPath"):
                source = os.path.join(source, mount["subPath"])
                os.makedirs(source, exist_ok=True)
            target = mount["mountPath"]
            if os.path.realpath(source) == os.path.realpath(target):
                continue
            parent = next((m for m in reversed(mounts) if target.startswith(m[1].rstrip("/") + "/")), None)
            if parent:  # inside another mount: the mount point is made in that volume
                os.makedirs(os.path.join(parent[0], os.path.relpath(target, parent[1])), exist_ok=True)
            else:
                self.mount_points.make(target)
            mounts.append([source, target, bool(mount.get("readOnly"))])
        return mounts

    def remove(self, pod: dict) -> None:
        shutil.rmtree(self.pod_dir(pod), ignore_errors=True)

