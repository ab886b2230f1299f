"""Linux cgroups for workloads: one directory per workload (v2), or one per hierarchy (v1: memory, cpu, pids and
freezer), under the backend's own cgroup in `kaos-<platform>/<workload>`; the limits written into them, race-free
killing (cgroup.kill, or the freezer), OOM kill counts. Standard library only."""
import os
import signal
import time
from typing import Dict, List, Optional

from kaos_backend.executors.group import KILL_TIMEOUT, ContainmentError, Group, Limits, kill_pids

CGROUP_ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
CPU_PERIOD_US = 100_000


class CgroupV2Group(Group):
    kind = "cgroup-v2"

    def __init__(self, name: str, limits: Limits, path: str, limits_enforced: bool):
        super().__init__(name, limits)
        self.path = path
        self.limits_enforced = limits_enforced

    @classmethod
    def create(cls, parent: str, name: str, limits: Limits) -> "CgroupV2Group":
        """`parent` is the platform's directory (created here) in the cgroup2 tree."""
        path = os.path.join(parent, name)
        try:
            os.makedirs(parent, exist_ok=True)
            enforced = _delegate_v2(parent)
            os.makedirs(path, exist_ok=True)
        except OSError as error:
            raise ContainmentError(error.errno, f"cannot create the cgroup {path}: {error.strerror}") from None
        group = cls(name, limits, path, enforced)
        if enforced:
            group._set_limits()
        return group

    def _set_limits(self) -> None:
        limits = self.limits
        if limits.memory_bytes:
            _write(os.path.join(self.path, "memory.max"), limits.memory_bytes)
            _try_write(os.path.join(self.path, "memory.swap.max"), 0)
        if limits.cpu:
            _write(os.path.join(self.path, "cpu.max"), f"{max(1000, int(limits.cpu * CPU_PERIOD_US))} {CPU_PERIOD_US}")
        if limits.pids_max:
            _write(os.path.join(self.path, "pids.max"), limits.pids_max)

    def describe(self) -> str:
        limits = self._limits_text()
        if limits and not self.limits_enforced:
            return (f"contained in cgroup v2 {self.path}; the memory/cpu controllers are not delegated to kaos here: "
                    f"{limits} not enforced")
        return f"contained in cgroup v2 {self.path}" + (f" ({limits})" if limits else "")

    def attach(self) -> None:
        _write(os.path.join(self.path, "cgroup.procs"), os.getpid())

    def pids(self) -> List[int]:
        try:
            return [int(pid) for pid in _read(os.path.join(self.path, "cgroup.procs")).split()]
        except OSError:
            return []

    def kill(self, timeout: float = KILL_TIMEOUT) -> None:
        if not _try_write(os.path.join(self.path, "cgroup.kill"), 1):  # Linux < 5.14: freeze, then kill
            _try_write(os.path.join(self.path, "cgroup.freeze"), 1)
            kill_pids(self.pids(), signal.SIGKILL)
            _try_write(os.path.join(self.path, "cgroup.freeze"), 0)
        super().kill(timeout)

    def oom_kills(self) -> int:
        return _keyed_count(os.path.join(self.path, "memory.events"), "oom_kill")

    def remove(self) -> None:
        _rmdir_when_empty(self.path)

    def to_state(self) -> dict:
        return {**super().to_state(), "path": self.path, "limits_enforced": self.limits_enforced}


class CgroupV1Group(Group):
    kind = "cgroup-v1"
    limits_enforced = True

    def __init__(self, name: str, limits: Limits, paths: Dict[str, str]):
        super().__init__(name, limits)
        self.paths = paths  # controller -> this group's directory in that hierarchy

    @classmethod
    def create(cls, parents: Dict[str, str], name: str, limits: Limits) -> "CgroupV1Group":
        paths = {controller: os.path.join(parent, name) for controller, parent in parents.items()}
        try:
            for path in paths.values():
                os.makedirs(path, exist_ok=True)
        except OSError as error:
            for path in paths.values():
                _rmdir_when_empty(path, 0)
            raise ContainmentError(error.errno, f"cannot create a cgroup under {error.filename}: "
                                                f"{error.strerror}") from None
        group = cls(name, limits, paths)
        group._set_limits()
        return group

    def _set_limits(self) -> None:
        limits, paths = self.limits, self.paths
        if limits.memory_bytes and "memory" in paths:
            _write(os.path.join(paths["memory"], "memory.limit_in_bytes"), limits.memory_bytes)
            _try_write(os.path.join(paths["memory"], "memory.memsw.limit_in_bytes"), limits.memory_bytes)
        if limits.cpu and "cpu" in paths:
            _write(os.path.join(paths["cpu"], "cpu.cfs_period_us"), CPU_PERIOD_US)
            _write(os.path.join(paths["cpu"], "cpu.cfs_quota_us"), max(1000, int(limits.cpu * CPU_PERIOD_US)))
        if limits.pids_max and "pids" in paths:
            _write(os.path.join(paths["pids"], "pids.max"), limits.pids_max)

    def describe(self) -> str:
        limits = self._limits_text()
        return f"contained in cgroup v1 ({', '.join(sorted(self.paths))}) {self.name}" + \
            (f" ({limits})" if limits else "")

    def attach(self) -> None:
        pid = os.getpid()
        for path in self.paths.values():
            _write(os.path.join(path, "cgroup.procs"), pid)

    def _tracking_path(self) -> str:
        for controller in ("freezer", "pids", "memory", "cpu"):
            if controller in self.paths:
                return self.paths[controller]
        raise ContainmentError("no cgroup hierarchy")

    def pids(self) -> List[int]:
        try:
            return [int(pid) for pid in _read(os.path.join(self._tracking_path(), "cgroup.procs")).split()]
        except OSError:
            return []

    def kill(self, timeout: float = KILL_TIMEOUT) -> None:
        freezer = self.paths.get("freezer")
        if freezer and _try_write(os.path.join(freezer, "freezer.state"), "FROZEN"):
            deadline = time.monotonic() + 1.0  # frozen: nobody can fork while the kills go out
            state = os.path.join(freezer, "freezer.state")
            while time.monotonic() < deadline and _read_or(state).strip() == "FREEZING":
                time.sleep(0.005)
            kill_pids(self.pids(), signal.SIGKILL)
            _try_write(os.path.join(freezer, "freezer.state"), "THAWED")
        super().kill(timeout)

    def oom_kills(self) -> int:
        memory = self.paths.get("memory")
        return _keyed_count(os.path.join(memory, "memory.oom_control"), "oom_kill") if memory else 0

    def remove(self) -> None:
        for path in self.paths.values():
            _rmdir_when_empty(path)

    def to_state(self) -> dict:
        return {**super().to_state(), "paths": self.paths}


def platform_parents(platform: str) -> Optional[dict]:
    """Where this machine's cgroups for `platform` go: {"kind": "cgroup-v2", "parent": path} or
    {"kind": "cgroup-v1", "parents": {controller: path}}; None when there are no writable cgroups."""
    own = _own_cgroups()
    top = f"kaos-{platform}"
    v2 = _v2_root()
    if v2:
        parent = os.path.join(v2 + own.get("", "/"), top)
        return {"kind": "cgroup-v2", "parent": os.path.normpath(parent)} if _writable_tree(parent) else None
    hierarchies = _v1_hierarchies()
    if "memory" not in hierarchies or not ({"freezer", "pids"} & set(hierarchies)):
        return None
    parents = {controller: os.path.normpath(os.path.join(mount + own.get(controller, "/"), top))
               for controller, mount in hierarchies.items()}
    return {"kind": "cgroup-v1", "parents": parents} if all(map(_writable_tree, parents.values())) else None


def _writable_tree(path: str) -> bool:
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    return os.access(existing, os.W_OK)


def platform_groups(platform: str) -> List[Group]:
    """Every workload cgroup of `platform` on this machine (to stop them all, e.g. when it is destroyed)."""
    where = platform_parents(platform)
    if where is None:
        return []
    if where["kind"] == "cgroup-v2":
        parent = where["parent"]
        names = _subdirectories(parent)
        return [CgroupV2Group(name, Limits(), os.path.join(parent, name), False) for name in names]
    parents = where["parents"]
    names = sorted({name for parent in parents.values() for name in _subdirectories(parent)})
    return [CgroupV1Group(name, Limits(), {c: os.path.join(p, name) for c, p in parents.items()}) for name in names]


def _subdirectories(path: str) -> List[str]:
    try:
        return sorted(entry.name for entry in os.scandir(path) if entry.is_dir())
    except OSError:
        return []


def limits_enforced_here(where: dict) -> bool:
    """Can memory and cpu limits hold under `where` (from `platform_parents`)? Always on v1; on v2 only when those
    controllers are available to the backend's own cgroup."""
    if where["kind"] != "cgroup-v2":
        return True
    own = os.path.normpath(os.path.dirname(where["parent"]))
    return {"memory", "cpu"} <= set(_read_or(os.path.join(own, "cgroup.controllers")).split())


def remove_platform(platform: str) -> None:
    """Remove the (empty) cgroup directories of `platform` itself, once its workloads' are gone."""
    where = platform_parents(platform)
    parents = ([where["parent"]] if where["kind"] == "cgroup-v2" else list(where["parents"].values())) if where else []
    for parent in parents:
        _rmdir_when_empty(parent, 0)


# -- cgroupfs ---------------------------------------------------------------------------------------------------
def _write(path: str, value) -> None:
    with open(path, "w") as handle:
        handle.write(str(value))


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _try_write(path: str, value) -> bool:
    try:
        _write(path, value)
        return True
    except OSError:
        return False


def _read_or(path: str, default: str = "") -> str:
    try:
        return _read(path)
    except OSError:
        return default


def _keyed_count(path: str, key: str) -> int:
    for line in _read_or(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _rmdir_when_empty(path: str, timeout: float = KILL_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)


def _mounts() -> List[List[str]]:
    try:
        return [line.split() for line in _read("/proc/self/mounts").splitlines()]
    except OSError:
        return []


def _own_cgroups() -> Dict[str, str]:
    """{controller or "" (v2): path} of this process (/proc/self/cgroup)."""
    own = {}
    try:
        lines = _read("/proc/self/cgroup").splitlines()
    except OSError:
        return own
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    return own


def _delegate_v2(parent: str) -> bool:
    """Enable the memory, cpu and pids controllers for the children of `parent` (and of its parents up to the
    first that has them): possible when those cgroups hold no processes themselves. True when all three hold."""
    wanted = {"memory", "cpu", "pids"}
    chain, path = [], parent
    while path.startswith(CGROUP_ROOT + "/") and path != CGROUP_ROOT:
        chain.append(path)
        path = os.path.dirname(path)
    for path in reversed(chain):  # from the top down: a child can only enable what its parent delegated
        enabled = set(_read_or(os.path.join(path, "cgroup.subtree_control")).split())
        available = set(_read_or(os.path.join(path, "cgroup.controllers")).split())
        missing = (wanted & available) - enabled
        if missing and not _try_write(os.path.join(path, "cgroup.subtree_control"),
                                      " ".join(f"+{name}" for name in sorted(missing))):
            return False
    return wanted <= set(_read_or(os.path.join(parent, "cgroup.subtree_control")).split())


def _v2_root() -> Optional[str]:
    for fields in _mounts():
        if len(fields) > 2 and fields[1] == CGROUP_ROOT and fields[2] == "cgroup2":
            return CGROUP_ROOT
    return None


def _v1_hierarchies() -> Dict[str, str]:
    """{controller: mount point} of the v1 hierarchies kaos uses."""
    found = {}
    for fields in _mounts():
        if len(fields) > 3 and fields[2] == "cgroup":
            options = fields[3].split(",")
            for controller in V1_CONTROLLERS:
                if controller in options and controller not in found:
                    found[controller] = fields[1]
    return found
