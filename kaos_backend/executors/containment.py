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
import signal
import time
from typing import List, Optional

from kaos_backend.executors.cgroups import (CgroupV1Group, CgroupV2Group, limits_enforced_here, platform_groups,
                                            platform_parents, remove_platform)
from kaos_backend.executors.group import (KILL_TIMEOUT, MARKER_VARIABLE, PLATFORM_VARIABLE, ContainmentError, Group,
                                          Limits, kill_pids, process_label)
from kaos_backend.executors.processes import CONFIGURED, NO_CGROUPS, SubreaperGroup, marked

MODES = ("auto", "cgroup", "subreaper")


def limits_problem(mode: str, platform: str) -> Optional[str]:
    """Why memory and cpu limits cannot be enforced for `platform`'s workloads on this machine, or None."""
    if mode == "subreaper":
        return CONFIGURED
    where = platform_parents(platform)
    if where is None:
        return "no cgroups are available to kaos on this machine (they need root and a writable cgroupfs)"
    if not limits_enforced_here(where):
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
    return SubreaperGroup(name, limits, why=CONFIGURED if mode == "subreaper" else NO_CGROUPS)


def group_from_state(state: dict) -> Group:
    limits = Limits(state.get("memory_bytes"), state.get("memory"), state.get("cpu"), state.get("pids_max"))
    kind = state.get("kind")
    if kind == "cgroup-v2":
        return CgroupV2Group(state["name"], limits, state["path"], bool(state.get("limits_enforced")))
    if kind == "cgroup-v1":
        return CgroupV1Group(state["name"], limits, dict(state["paths"]))
    return SubreaperGroup(state["name"], limits, state.get("runner_pid"), state.get("why") or NO_CGROUPS)


def stop_platform(platform: str) -> List[str]:
    """Stop every workload process of `platform` on this machine, wherever it is: in the platform's cgroups, or
    marked with `KAOS_PLATFORM_ID=<platform>` (a subreaper's workloads); then remove the platform's cgroups.
    The labels of the processes stopped (`4242 sleep 120`)."""
    stopped = []
    for group in platform_groups(platform):
        stopped += [process_label(pid) for pid in group.pids()]
        group.kill()
        group.remove()
    pids = marked(platform, PLATFORM_VARIABLE)
    stopped += [process_label(pid) for pid in pids]
    deadline = time.monotonic() + KILL_TIMEOUT
    while pids and time.monotonic() < deadline:
        kill_pids(pids, signal.SIGKILL)
        time.sleep(0.02)
        pids = marked(platform, PLATFORM_VARIABLE)
    remove_platform(platform)
    return stopped


__all__ = ["MARKER_VARIABLE", "MODES", "PLATFORM_VARIABLE", "ContainmentError", "Group", "Limits", "SubreaperGroup",
           "create_group", "group_from_state", "limits_problem", "platform_groups", "platform_parents",
           "process_label", "stop_platform"]
