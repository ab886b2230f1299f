"""Resource requests (cpu cores, memory as a Kubernetes quantity, gpus), checked against minimums and configured
maxima."""
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, NamedTuple, Optional

from kaos_backend.errors import CpuRequestError, GpuRequestError, MemoryRequestError
from kaos_backend.whole_numbers import plain_whole_number

MEMORY_DOCS = "https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/"
GI = 2 ** 30
MAX_QUANTITY_BYTES = 2 ** 63 - 1  # Kubernetes keeps quantities in an int64
# Below these a workload cannot run: the smallest CPU quota kaos gives a cgroup is 1 ms per 100 ms period, and
# the Docker engine refuses a memory limit under 6 MiB (a Python interpreter alone needs more).
MIN_CPU = 0.01
MIN_MEMORY = "6Mi"
MIN_MEMORY_BYTES = 6 * 2 ** 20
MAX_GPUS = 999_999  # a request's bound whatever the configured maximum

_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6,
            "G": Decimal(10) ** 9, "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18}
# <signed number><suffix>, suffix = binary SI | decimal exponent | decimal SI (Kubernetes' quantity grammar).
_QUANTITY_RE = re.compile(r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                          r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[mkMGTPE]?)$")
_CPU_RE = re.compile(r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?P<milli>m?)$")


class Resources(NamedTuple):
    cpu: Optional[float] = None       # cores
    memory: Optional[str] = None      # the quantity as requested, e.g. "512Mi"
    memory_bytes: Optional[int] = None
    gpu: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"cpu": self.cpu, "memory": self.memory, "gpu": self.gpu}


def memory_to_bytes(quantity: str) -> int:
    """Bytes of a Kubernetes memory quantity (`512Mi`, `1G`, `500k`, `100m`, `1e9`); rounded up like Kubernetes."""
    match = _QUANTITY_RE.match(quantity.strip()) if isinstance(quantity, str) else None
    if not match:
        raise _incorrect_memory(quantity)
    number, suffix = Decimal(match["number"]), match["suffix"]
    try:
        if suffix in _BINARY:
            value = number * _BINARY[suffix]
        elif suffix[:1] in ("e", "E") and len(suffix) > 1:
            exponent = int(suffix[1:])
            if abs(exponent) > 100:
                raise _incorrect_memory(quantity)
            value = number.scaleb(exponent)
        else:
            value = number * _DECIMAL[suffix]
    except InvalidOperation:
        raise _incorrect_memory(quantity) from None
    if value < 0 or value > MAX_QUANTITY_BYTES:
        raise _incorrect_memory(quantity)
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def parse_cpu(text: str) -> float:
    match = _CPU_RE.match(text.strip())
    value = float(match["number"]) / (1000 if match["milli"] else 1) if match else math.nan
    if not math.isfinite(value) or value < 0:
        raise CpuRequestError(f"Incorrect CPU request {text}. Give a number of cores such as 0.5, 2 or 500m.")
    return value


def parse_gpu(text: str) -> int:
    value = plain_whole_number(text)
    if value is None or value > MAX_GPUS:
        raise GpuRequestError(f"Incorrect GPU request {text}. Give a whole number of GPUs such as 0 or 1.")
    return value


def validate_resources(cpu: Any = None, memory: Any = None, gpu: Any = None, max_cpu: Optional[float] = None,
                       max_memory: Optional[float] = None, max_gpu: Optional[int] = None) -> Resources:
    """Parse the request's cpu/memory/gpu (strings or numbers; None or "" = not given) and check the minimums
    (MIN_CPU cores, MIN_MEMORY) and the maxima.

    A cpu or memory of 0 is not given either: the executors have always read 0 as "no limit". `max_cpu`/
    `max_memory` (Gi) of None or 0 mean no check; `max_gpu` None means unknown (no check), 0 means the cluster
    has no GPUs. CpuRequestError / MemoryRequestError / GpuRequestError (400) say what is wrong.
    """
    cpu_value = (parse_cpu(str(cpu)) or None) if _given(cpu) else None
    if cpu_value is not None and cpu_value < MIN_CPU:
        raise CpuRequestError(f"CPU request {_show(cpu)} too low. Minimum allowed is {MIN_CPU:g} (10m).")
    if cpu_value is not None and max_cpu and cpu_value > max_cpu:
        raise CpuRequestError(f"CPU request {_show(cpu)} too high. Maximum allowed is {max_cpu:g}.")

    gpu_value = parse_gpu(str(gpu)) if _given(gpu) else None
    if gpu_value and max_gpu is not None and gpu_value > max_gpu:
        if max_gpu == 0:
            raise GpuRequestError("GPUs are not enabled")
        raise GpuRequestError(f"GPU request {gpu_value} too high. Maximum allowed is {max_gpu}.")

    memory_text = str(memory).strip() if _given(memory) else None
    memory_bytes = (memory_to_bytes(memory_text) or None) if memory_text is not None else None
    if memory_bytes is None:
        memory_text = None
    elif memory_bytes < MIN_MEMORY_BYTES:
        raise MemoryRequestError(f"Memory request {memory_text} too low. Minimum allowed is {MIN_MEMORY}.")
    if memory_bytes is not None and max_memory and memory_bytes > max_memory * GI:
        raise MemoryRequestError(f"Memory request {memory_text} too high. Maximum allowed is {max_memory:g}Gi.")
    return Resources(cpu_value, memory_text, memory_bytes, gpu_value)


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
    error = {"cpu": CpuRequestError, "memory": MemoryRequestError, "gpu": GpuRequestError}[asked[0][0]]
    raise error(message)


def _given(value: Any) -> bool:
    return value is not None and str(value).strip() not in ("", "None")


def _show(value: Any) -> str:
    return str(value).strip()


def _incorrect_memory(quantity: Any) -> MemoryRequestError:
    return MemoryRequestError(f"Incorrect memory request {quantity}. Please check memory specs: {MEMORY_DOCS}")
