"""Resource requests as text (cpu cores, memory as a Kubernetes quantity, gpus): their grammar and minimums, shared
by the CLI (which checks a request before it uploads anything) and the backend (which also checks the configured
maxima and the cluster's nodes: kaos_backend/resources.py).

Errors: `ResourceRequestError` (a ValueError) whose `resource` is "cpu", "memory" or "gpu" and whose text is the
message the API answers (`CPU_REQUEST_ERROR`, `MEMORY_REQUEST_ERROR`, `GPU_REQUEST_ERROR`)."""
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, NamedTuple, Optional

from kaos_model.whole_numbers import plain_whole_number

MEMORY_DOCS = "https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/"
# Below these a workload cannot run: the smallest CPU quota kaos gives a cgroup is 1 ms per 100 ms period, and
# the Docker engine refuses a memory limit under 6 MiB (a Python interpreter alone needs more).
MIN_CPU = 0.01
MIN_MEMORY = "6Mi"
MIN_MEMORY_BYTES = 6 * 2 ** 20
# Above these no platform can mean a request, whatever maximum is configured (KAOS_MAX_*, a cluster's nodes), and
# every executor's conversion of a request that passed them stays far inside int64 (no OverflowError, no clipping):
# - cpu: 1024 cores, more logical CPUs than the largest common servers have (2 sockets of 192 cores, 768 threads);
#   a cgroup's quota is then at most 1.024e8 us per period, Docker's NanoCpus 1.024e12, Kubernetes' 1024000m;
# - memory: 1Pi, beyond the largest single machines (tens of TiB) and 8192 times below int64 bytes (Kubernetes'
#   quantities, Docker's limits and the cgroups' memory limits are int64 bytes, rounded to pages by the kernel);
# - gpu: 64, beyond the largest GPU nodes (8 or 16 GPUs).
MAX_CPU = 1024
MAX_MEMORY = "1Pi"
MAX_MEMORY_BYTES = 2 ** 50
MAX_GPUS = 64

_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6,
            "G": Decimal(10) ** 9, "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18}
# <signed number><suffix>, suffix = binary SI | decimal exponent | decimal SI (Kubernetes' quantity grammar).
_QUANTITY_RE = re.compile(r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                          r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[mkMGTPE]?)$")
_CPU_RE = re.compile(r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?P<milli>m?)$")


class ResourceRequestError(ValueError):
    """A request that is not a cpu, memory or gpu amount kaos takes; `resource` says which, the text what to give."""

    def __init__(self, resource: str, message: str):
        super().__init__(message)
        self.resource = resource


class Resources(NamedTuple):
    cpu: Optional[float] = None       # cores
    memory: Optional[str] = None      # the quantity as requested, e.g. "512Mi"
    memory_bytes: Optional[int] = None
    gpu: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"cpu": self.cpu, "memory": self.memory, "gpu": self.gpu}


def memory_to_bytes(quantity: str) -> int:
    """Bytes of a Kubernetes memory quantity (`512Mi`, `1G`, `500k`, `100m`, `1e9`); rounded up like Kubernetes.
    Raises ResourceRequestError ("memory")."""
    match = _QUANTITY_RE.match(quantity.strip()) if isinstance(quantity, str) else None
    if not match:
        raise _incorrect_memory(quantity)
    number, suffix = Decimal(match["number"]), match["suffix"]
    try:
        if suffix in _BINARY:
            value = number * _BINARY[suffix]
        elif suffix[:1] in ("e", "E") and len(suffix) > 1:
            exponent = int(suffix[1:])
            if abs(exponent) > 100 and number:  # 1e400 bytes: too high; 1e-400: no quantity kaos takes
                raise _memory_too_high(quantity) if exponent > 0 else _incorrect_memory(quantity)
            value = number.scaleb(exponent) if number else number
        else:
            value = number * _DECIMAL[suffix]
    except InvalidOperation:
        raise _incorrect_memory(quantity) from None
    if value < 0:
        raise _incorrect_memory(quantity)
    if value > MAX_MEMORY_BYTES:
        raise _memory_too_high(quantity)
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def parse_cpu(text: str) -> float:
    """Cores of a cpu request (`0.5`, `2`, `500m`, `1e-1`). Raises ResourceRequestError ("cpu")."""
    match = _CPU_RE.match(text.strip())
    value = float(match["number"]) / (1000 if match["milli"] else 1) if match else math.nan
    if not math.isfinite(value) and value > 0 or value > MAX_CPU:  # a number too large for a float is inf
        raise ResourceRequestError("cpu", f"CPU request {shown(text)} too high. Maximum allowed is {MAX_CPU}.")
    if not math.isfinite(value) or value < 0:
        raise ResourceRequestError("cpu", f"Incorrect CPU request {text}. Give a number of cores such as 0.5, 2 "
                                          "or 500m.")
    return value


def parse_gpu(text: str) -> int:
    """GPUs of a gpu request (a plain whole number, at most MAX_GPUS). Raises ResourceRequestError ("gpu")."""
    value = plain_whole_number(text)
    if value is not None and value > MAX_GPUS or value is None and re.fullmatch("[1-9][0-9]*", str(text)):
        raise ResourceRequestError("gpu", f"GPU request {shown(text)} too high. Maximum allowed is {MAX_GPUS}.")
    if value is None:
        raise ResourceRequestError("gpu", f"Incorrect GPU request {text}. Give a whole number of GPUs such as 0 "
                                          "or 1.")
    return value


def parse_resources(cpu: Any = None, memory: Any = None, gpu: Any = None) -> Resources:
    """The request's cpu/memory/gpu (strings or numbers; None or "" = not given) parsed and checked against the
    minimums (MIN_CPU cores, MIN_MEMORY). A cpu or memory of 0 is not given either: the executors have always read
    0 as "no limit". Raises ResourceRequestError, cpu first, then gpu, then memory."""
    cpu_value = (parse_cpu(str(cpu)) or None) if given(cpu) else None
    if cpu_value is not None and cpu_value < MIN_CPU:
        raise ResourceRequestError("cpu", f"CPU request {shown(cpu)} too low. Minimum allowed is {MIN_CPU:g} (10m).")
    gpu_value = parse_gpu(str(gpu)) if given(gpu) else None
    memory_text = str(memory).strip() if given(memory) else None
    memory_bytes = (memory_to_bytes(memory_text) or None) if memory_text is not None else None
    if memory_bytes is None:
        memory_text = None
    elif memory_bytes < MIN_MEMORY_BYTES:
        raise ResourceRequestError("memory", f"Memory request {memory_text} too low. Minimum allowed is "
                                             f"{MIN_MEMORY}.")
    return Resources(cpu_value, memory_text, memory_bytes, gpu_value)


def given(value: Any) -> bool:
    """Whether a request names the resource at all (None, "" and "None" do not)."""
    return value is not None and str(value).strip() not in ("", "None")


def shown(value: Any) -> str:
    return str(value).strip()


def _memory_too_high(quantity: Any) -> ResourceRequestError:
    return ResourceRequestError("memory", f"Memory request {shown(quantity)} too high. Maximum allowed is "
                                          f"{MAX_MEMORY}.")


def _incorrect_memory(quantity: Any) -> ResourceRequestError:
    return ResourceRequestError("memory", f"Incorrect memory request {quantity}. Please check memory specs: "
                                          f"{MEMORY_DOCS}")
