"""A workload's processes as one group: the contract (`Group`) that cgroups and the subreaper fulfil, the
limits it may carry, and the few process helpers they share. Standard library only."""
import os
import signal
import time
from typing import List, NamedTuple, Optional

MARKER_VARIABLE = "KAOS_WORKLOAD_ID"    # every process of a workload carries its group's name in this variable
PLATFORM_VARIABLE = "KAOS_PLATFORM_ID"  # ... and its platform's id in this one (see config.platform_id)
KILL_TIMEOUT = 5.0
DEFAULT_PIDS_MAX = 4096


class Limits(NamedTuple):
    memory_bytes: Optional[int] = None
    memory: Optional[str] = None     # as requested ("512Mi"), for messages
    cpu: Optional[float] = None      # cores
    pids_max: Optional[int] = DEFAULT_PIDS_MAX


class ContainmentError(OSError):
    """A cgroup could not be made or used."""


def kill_pids(pids: List[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def process_label(pid: int) -> str:
    """`4242 sleep 120`: a process as a log line names it."""
    try:
        with open(f"/proc/{pid}/cmdline") as handle:
            text = " ".join(handle.read().replace("\0", " ").split())
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
        kill_pids(self.pids(), signum)

    def kill(self, timeout: float = KILL_TIMEOUT) -> None:
        """SIGKILL every process of the group and wait (up to `timeout`) until none is left."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids or time.monotonic() > deadline:
                return
            kill_pids(pids, signal.SIGKILL)
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
