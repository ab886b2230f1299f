"""Resource requests (cpu cores, memory as a Kubernetes quantity, gpus), checked against minimums and configured
maxima. Their grammar and minimums are kaos_model.resources' (the CLI checks them before it uploads); here its
ResourceRequestError becomes the API's CpuRequestError, MemoryRequestError or GpuRequestError (400)."""
import functools
from typing import Any, Optional

from kaos_backend.errors import CpuRequestError, GpuRequestError, MemoryRequestError
from kaos_model import resources as requests_text
from kaos_model.resources import (MAX_CPU, MAX_GPUS, MAX_MEMORY_BYTES, MEMORY_DOCS, MIN_CPU, MIN_MEMORY,  # noqa: F401
                                  MIN_MEMORY_BYTES, ResourceRequestError, Resources)

GI = 2 ** 30
API_ERRORS = {"cpu": CpuRequestError, "memory": MemoryRequestError, "gpu": GpuRequestError}


def _as_api_error(parse):
    """`parse` raising the API's error for its ResourceRequestError."""
    @functools.wraps(parse)
    def parsed(*args, **kwargs):
        try:
            return parse(*args, **kwargs)
        except ResourceRequestError as error:
            raise API_ERRORS[error.resource](str(error)) from None
    return parsed


memory_to_bytes = _as_api_error(requests_text.memory_to_bytes)
parse_cpu = _as_api_error(requests_text.parse_cpu)
parse_gpu = _as_api_error(requests_text.parse_gpu)
parse_resources = _as_api_error(requests_text.parse_resources)


def validate_resources(cpu: Any = None, memory: Any = None, gpu: Any = None, max_cpu: Optional[float] = None,
                       max_memory: Optional[float] = None, max_gpu: Optional[int] = None) -> Resources:
    """Parse the request's cpu/memory/gpu (strings or numbers; None or "" = not given) and check the minimums
    (MIN_CPU cores, MIN_MEMORY: kaos_model.resources.parse_resources) and the maxima.

    `max_cpu`/`max_memory` (Gi) of None or 0 mean no check; `max_gpu` None means unknown (no check), 0 means the
    cluster has no GPUs. CpuRequestError / MemoryRequestError / GpuRequestError (400) say what is wrong.
    """
    request = parse_resources(cpu, memory, gpu)
    if request.cpu is not None and max_cpu and request.cpu > max_cpu:
        raise CpuRequestError(f"CPU request {requests_text.shown(cpu)} too high. Maximum allowed is {max_cpu:g}.")
    if request.gpu and max_gpu is not None and request.gpu > max_gpu:
        if max_gpu == 0:
            raise GpuRequestError("GPUs are not enabled")
        raise GpuRequestError(f"GPU request {request.gpu} too high. Maximum allowed is {max_gpu}.")
    if request.memory_bytes is not None and max_memory and request.memory_bytes > max_memory * GI:
        raise MemoryRequestError(f"Memory request {request.memory} too high. Maximum allowed is {max_memory:g}Gi.")
    return request


def check_fits_one(request: Resources, nodes) -> None:
    """Refuse `request` when no node of `nodes` (Capacity.nodes: each one's (cpu, memory_gi, gpu), None where not
    known) has all of it at once: a workload runs on one node. No nodes (not known): nothing refused.
    CpuRequestError (or MemoryRequestError, GpuRequestError: the first of them asked for) says so."""
    asked = [(name, value) for name, value in (("cpu", request.cpu), ("memory", request.memory_bytes),
                                                 ("gpu", request.gpu)) if value]
    if not nodes or len(asked) < 2:
        return  # one resource alone: validate_resources compared it with the largest node's
    wanted = {"cpu": request.cpu, "memory": (request.memory_bytes or 0) / GI, "gpu": request.gpu or 0}

    def fits(node) -> bool:
        offered = dict(zip(("cpu", "memory", "gpu"), node))
        return all(offered[name] is None or offered[name] >= wanted[name] for name, _ in asked)
    if any(fits(node) for node in nodes):
        return
    shown = {"cpu": f"{request.cpu:g} CPUs" if request.cpu else "", "memory": f"{request.memory} of memory",
             "gpu": f"{request.gpu} GPUs"}
    offers = "; ".join(", ".join(part for part in (f"{cpu:g} CPUs" if cpu is not None else "",
                                                   f"{memory:.4g}Gi" if memory is not None else "",
                                                   f"{gpu} GPUs" if gpu else "") if part)
                       for cpu, memory, gpu in list(nodes)[:5])
    message = (f"No node has {' and '.join(shown[name] for name, _ in asked)} at once (a workload runs on one "
               f"node; the nodes offer: {offers})")
    raise API_ERRORS[asked[0][0]](message)
