"""Holding one workload's processes together, so that stopping it stops all of them and its limits hold.

Where the machine allows it (root, cgroupfs writable) each workload gets a Linux cgroup of its own:

* cgroup v2 (`/sys/fs/cgroup` is cgroup2): one directory; `memory.max`, `cpu.max`, `pids.max` when those
  controllers can be delegated to it, `cgroup.kill` to end everything, `memory.events` for OOM kills.
* cgroup v1 (the memory, cpu, pids and freezer hierarchies of older machines): one directory per hierarchy;
  `memory.limit_in_bytes`, `cpu.cfs_quota_us`, `pids.max`; the freezer makes killing race-free; OOM kills from
  `memory.oom_control`.

Elsewhere the workload's runner is a child subreaper (PR_SET_CHILD_SUBREAPER): every descendant that
daemonizes or starts its own session is re-parented to the runner, so the runner's process tree is the workload;
processes are also marked by the environment variable `KAOS_WORKLOAD_ID`, which finds them after the runner is
gone. No limits can be enforced there.

Cgroups live under the backend's own cgroup (as /proc/self/cgroup names it) in `kaos-<platform>/<workload>`,
where <platform> identifies one backend's data directory: one backend never touches another's workloads.

    group = create_group("auto", platform, name, Limits(memory_bytes, "512Mi", cpu=0.5))  # the executor
    state = group.to_state()        # JSON-able; `group_from_state(state)` in another process finds it again
    group.attach()                  # in the workload's process, before exec
    group.pids()                    # its live processes; group.kill() SIGKILLs all; group.oom_kills()
    group.remove()                  # once empty

Standard library only (psutil, where installed, only for the subreaper's process tree).
"""
import os
import signal
import time
from typing import Dict, List, NamedTuple, Optional

MARKER_VARIABLE = "KAOS_WORKLOAD_ID"
PLATFORM_VARIABLE = "KAOS_PLATFORM_ID"
MODES = ("auto", "cgroup", "subreaper")
CGROUP_ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
CPU_PERIOD_US = 100_000
KILL_TIMEOUT = 5.0
DEFAULT_PIDS_MAX = 4096


class Limits(NamedTuple):
    memory_bytes: Optional[int] = None
    memory: Optional[str] = None     # as requested ("512Mi"), for messages
    cpu: Optional[float] = None      # cores
    pids_max: Optional[int] = DEFAULT_PIDS_MAX


class ContainmentError(OSError):
    """A cgroup could not be made or used."""


def _write(path: str, value) -> None:
    with open(path, "w") as handle:
        handle.write(str(value))


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


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


def _kill_pids(pids: List[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


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


def process_label(pid: int) -> str:
    """`4242 sleep 120`: a process as a log line names it."""
    try:
        text = " ".join(_read(f"/proc/{pid}/cmdline").replace("\0", " ").split())
    except OSError:
        text = ""
    return f"{pid} {text[:120]}".strip()


class Group:
    """One workload's processes. Subclasses: CgroupV2Group, CgroupV1Group, SubreaperGroup."""
    kind = "abstract"
    limits_enforced = False

    def __init__(self, name: str, limits: Limits):
        self.name = name
        self.limits = limits

    def describe(self) -> str:
        """One line for the workload's log: how it is contained and which limits hold."""
        raise NotImplementedError

    def attach(self) -> None:
        """Move the calling process into the group (run in the workload's process before exec)."""

    def pids(self) -> List[int]:
        raise NotImplementedError

    def signal(self, signum: int) -> None:
        _kill_pids(self.pids(), signum)

    def kill(self, timeout: float = KILL_TIMEOUT) -> None:
        """SIGKILL every process of the group and wait (up to `timeout`) until none is left."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids or time.monotonic() > deadline:
                return
            _kill_pids(pids, signal.SIGKILL)
            time.sleep(0.02)

    def oom_kills(self) -> int:
        return 0

    def remove(self) -> None:
        """Remove the group's cgroup directories (after `kill`); nothing to do for a subreaper."""

    def to_state(self) -> dict:
        return {"kind": self.kind, "name": self.name, "memory_bytes": self.limits.memory_bytes,
                "memory": self.limits.memory, "cpu": self.limits.cpu, "pids_max": self.limits.pids_max}

    def _limits_text(self) -> str:
        parts = []
        if self.limits.memory:
            parts.append(f"memory {self.limits.memory}")
        if self.limits.cpu:
            parts.append(f"cpu {self.limits.cpu:g}")
        return ", ".join(parts)


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
            _kill_pids(self.pids(), signal.SIGKILL)
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
            _kill_pids(self.pids(), signal.SIGKILL)
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


class SubreaperGroup(Group):
    """The runner's process tree, plus every process marked with this workload's `KAOS_WORKLOAD_ID`."""
    kind = "subreaper"

    def __init__(self, name: str, limits: Limits, runner_pid: Optional[int] = None):
        super().__init__(name, limits)
        self.runner_pid = runner_pid

    def describe(self) -> str:
        limits = self._limits_text()
        text = "contained by its runner as child subreaper (no cgroups available to kaos on this machine)"
        return text + (f": {limits} not enforced" if limits else "")

    def pids(self) -> List[int]:
        found = set(_descendants(self.runner_pid)) if self.runner_pid else set()
        found.update(_marked(self.name))
        found.discard(os.getpid())
        found.discard(self.runner_pid)
        return sorted(found)

    def to_state(self) -> dict:
        return {**super().to_state(), "runner_pid": self.runner_pid}


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


def _descendants(pid: int) -> List[int]:
    try:
        import psutil
    except ImportError:
        return _descendants_from_proc(pid)
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return [child.pid for child in children if _alive(child)]


def _alive(process) -> bool:
    try:
        import psutil
        return process.status() != psutil.STATUS_ZOMBIE
    except Exception:  # noqa: BLE001 - gone meanwhile
        return False


def _descendants_from_proc(root: int) -> List[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            text = _read_or(f"/proc/{entry}/stat")
            fields = text[text.rfind(")") + 2:].split()
            if len(fields) > 1 and fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        current = frontier.pop()
        for pid, parent in parents.items():
            if parent == current:
                found.append(pid)
                frontier.append(pid)
    return found


def _marked(name: str, variable: str = MARKER_VARIABLE) -> List[int]:
    """Processes whose environment carries `<variable>=<name>` (readable: ours, or all as root)."""
    marker = f"{variable}={name}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                marked = marker in handle.read().split(b"\0")
            if marked and _read_or(f"/proc/{entry}/stat").rsplit(")", 1)[-1][1:2] != "Z":
                found.append(int(entry))
        except OSError:
            continue
    return found


# -- choosing and finding groups --------------------------------------------------------------------------------
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


def limits_problem(mode: str, platform: str) -> Optional[str]:
    """Why memory and cpu limits cannot be enforced for `platform`'s workloads on this machine, or None."""
    if mode == "subreaper":
        return "kaos is configured without cgroups (KAOS_CONTAINMENT=subreaper)"
    where = platform_parents(platform)
    if where is None:
        return "no cgroups are available to kaos on this machine (they need root and a writable cgroupfs)"
    if where["kind"] == "cgroup-v2":
        own = os.path.normpath(os.path.dirname(where["parent"]))
        if not {"memory", "cpu"} <= set(_read_or(os.path.join(own, "cgroup.controllers")).split()):
            return "the cgroup v2 memory and cpu controllers are not delegated to kaos on this machine"
    return None


def create_group(mode: str, platform: str, name: str, limits: Limits) -> Group:
    """A new group for workload `name`: a cgroup when `mode` is "cgroup" (ContainmentError if impossible) or
    "auto" and the machine allows it, else a subreaper group (whose runner pid is set once the runner runs)."""
    if mode not in MODES:
        raise ValueError(f"containment mode {mode!r} is not one of {', '.join(MODES)}")
    if mode != "subreaper":
        where = platform_parents(platform)
        if where is None and mode == "cgroup":
            raise ContainmentError("no writable cgroup hierarchy for kaos on this machine")
        try:
            if where and where["kind"] == "cgroup-v2":
                return CgroupV2Group.create(where["parent"], name, limits)
            if where:
                return CgroupV1Group.create(where["parents"], name, limits)
        except ContainmentError:
            if mode == "cgroup":
                raise
    return SubreaperGroup(name, limits)


def group_from_state(state: dict) -> Group:
    limits = Limits(state.get("memory_bytes"), state.get("memory"), state.get("cpu"), state.get("pids_max"))
    kind = state.get("kind")
    if kind == "cgroup-v2":
        return CgroupV2Group(state["name"], limits, state["path"], bool(state.get("limits_enforced")))
    if kind == "cgroup-v1":
        return CgroupV1Group(state["name"], limits, dict(state["paths"]))
    return SubreaperGroup(state["name"], limits, state.get("runner_pid"))


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


def stop_platform(platform: str) -> List[str]:
    """Stop every workload process of `platform` on this machine, wherever it is: in the platform's cgroups, or
    marked with `KAOS_PLATFORM_ID=<platform>` (a subreaper's workloads); then remove the platform's cgroups.
    The labels of the processes stopped (`4242 sleep 120`)."""
    stopped = []
    for group in platform_groups(platform):
        stopped += [process_label(pid) for pid in group.pids()]
        group.kill()
        group.remove()
    marked = _marked(platform, PLATFORM_VARIABLE)
    stopped += [process_label(pid) for pid in marked]
    deadline = time.monotonic() + KILL_TIMEOUT
    while marked and time.monotonic() < deadline:
        _kill_pids(marked, signal.SIGKILL)
        time.sleep(0.02)
        marked = _marked(platform, PLATFORM_VARIABLE)
    where = platform_parents(platform)
    parents = ([where["parent"]] if where["kind"] == "cgroup-v2" else list(where["parents"].values())) if where else []
    for parent in parents:
        _rmdir_when_empty(parent, 0)
    return stopped
