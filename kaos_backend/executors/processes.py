"""The workload group where no cgroup can hold it: the runner as child subreaper (PR_SET_CHILD_SUBREAPER), so
every descendant that daemonizes or leaves its session is re-parented to it, plus the processes marked with the
workload's `KAOS_WORKLOAD_ID` (found after the runner is gone). No limits hold there. psutil walks the process
tree where installed (the backend's dependency); /proc otherwise."""
import os
from typing import List, Optional

from kaos_backend.executors.group import MARKER_VARIABLE, Group, Limits

NO_CGROUPS = "no cgroups available to kaos on this machine"
CONFIGURED = "kaos is configured without cgroups: KAOS_CONTAINMENT=subreaper"


class SubreaperGroup(Group):
    """The runner's process tree, plus every process marked with this workload's `KAOS_WORKLOAD_ID`."""
    kind = "subreaper"

    def __init__(self, name: str, limits: Limits, runner_pid: Optional[int] = None, why: str = NO_CGROUPS):
        super().__init__(name, limits)
        self.runner_pid = runner_pid
        self.why = why  # why no cgroup holds it

    def describe(self) -> str:
        limits = self._limits_text()
        text = f"contained by its runner as child subreaper ({self.why})"
        return text + (f": {limits} not enforced" if limits else "")

    def pids(self) -> List[int]:
        found = set(_descendants(self.runner_pid)) if self.runner_pid else set()
        found.update(marked(self.name))
        found.discard(os.getpid())
        found.discard(self.runner_pid)
        return sorted(found)

    def to_state(self) -> dict:
        return {**super().to_state(), "runner_pid": self.runner_pid, "why": self.why}


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
            text = _stat(entry)
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


def marked(name: str, variable: str = MARKER_VARIABLE) -> List[int]:
    """Processes whose environment carries `<variable>=<name>` (readable: ours, or all as root)."""
    marker = f"{variable}={name}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                marked = marker in handle.read().split(b"\0")
            if marked and _stat(entry).rsplit(")", 1)[-1][1:2] != "Z":
                found.append(int(entry))
        except OSError:
            continue
    return found


def _stat(pid) -> str:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read()
    except OSError:
        return ""
