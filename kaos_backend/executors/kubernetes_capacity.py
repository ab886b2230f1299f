"""What one workload can be given on the cluster, read live from its nodes (reference §6.13: kaos 1.x computed
MAX_CPU, MAX_MEMORY and MAX_GPU from the nodes' allocatable resources once, at deploy time): the largest
allocatable cpu, memory and `nvidia.com/gpu` of a node kaos's pods can be scheduled on (neither cordoned nor
tainted), so a request no node can meet is refused when it is made instead of waiting Unschedulable. With
§11.12's fix: GPUs count as "not enabled" only when the nodes were read and none has any; when they cannot be
read (the backend's Role may not list nodes: the node-capacity component is optional) nothing is known and
nothing is refused.

Read at most once per CACHE_SECONDS per process (an API worker checks each upload that asks for resources)."""
import logging
import threading
import time
from typing import Dict, Optional, Tuple

from kaos_backend.executors.base import Capacity

log = logging.getLogger("kaos_backend.executors.kubernetes")
CACHE_SECONDS = 30.0
LIST_TIMEOUT = (3, 5)   # (connect, read) seconds: an API request waits for this
GPU_RESOURCE = "nvidia.com/gpu"
GI = 2 ** 30

_lock = threading.Lock()
_cache: Dict[Tuple, Tuple[float, Optional[Capacity]]] = {}


def schedulable(node: dict) -> bool:
    """Whether kaos's pods can be scheduled on `node`: it is not cordoned, and has no taint that keeps pods off it
    (NoSchedule, NoExecute: a control plane's node-role.kubernetes.io/control-plane, node.kubernetes.io/not-ready,
    a team's dedicated nodes), as kaos's pods tolerate none."""
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    return not any((taint or {}).get("effect") in ("NoSchedule", "NoExecute") for taint in spec.get("taints") or [])


def node_capacity(nodes) -> Capacity:
    """The largest allocatable cpu (cores), memory (GiB) and GPUs of the nodes among `nodes` (the API's JSON dicts)
    that kaos's pods can be scheduled on (`schedulable`), and each such node's (Capacity.nodes); (None, None, None,
    ()) when there is none."""
    from kaos_backend.resources import memory_to_bytes, parse_cpu
    each = []
    for node in nodes:
        if not schedulable(node):
            continue
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        try:
            each.append((parse_cpu(str(allocatable["cpu"])) if allocatable.get("cpu") else None,
                         memory_to_bytes(str(allocatable["memory"])) / GI if allocatable.get("memory") else None,
                         int(allocatable.get(GPU_RESOURCE) or 0)))
        except (ValueError, ArithmeticError) as error:  # a quantity this kaos cannot read: that node is skipped
            log.warning("Node %s: allocatable %s not understood: %s", (node.get("metadata") or {}).get("name"),
                        allocatable, error)

    def largest(values):
        known = [value for value in values if value is not None]
        return max(known) if known else None
    return Capacity(largest(node[0] for node in each), largest(node[1] for node in each),
                    largest(node[2] for node in each), tuple(each))


def cluster_capacity(config) -> Optional[Capacity]:
    """The capacity of `config`'s cluster (cached), or None when its nodes cannot be listed."""
    key = (config.kubeconfig, config.kube_context)
    with _lock:
        cached = _cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
    capacity = None
    try:
        import json

        from kaos_backend.executors.kubernetes_client import apis
        core = apis(config)[0]
        answer = core.list_node(_preload_content=False, _request_timeout=LIST_TIMEOUT)
        capacity = node_capacity(json.loads(answer.data).get("items") or [])
    except Exception as error:  # noqa: BLE001 - not known: no check (and said in the log)
        log.warning("The cluster's nodes could not be listed for their capacity (%s: %s): resource requests are "
                    "not checked against it", type(error).__name__, str(error).splitlines()[0][:300] if str(error)
                    else "")
    with _lock:
        _cache[key] = (time.monotonic(), capacity)
    return capacity
