import os
import re

import pytest

from kaos_backend.errors import CpuRequestError, GpuRequestError, MemoryRequestError
from kaos_backend.resources import MEMORY_DOCS, Resources, memory_to_bytes, validate_resources


@pytest.mark.parametrize("quantity, size", [
    ("0", 0), ("128974848", 128974848), ("129e6", 129_000_000), ("129M", 129_000_000), ("123Mi", 123 * 2 ** 20),
    ("500k", 500_000), ("100m", 1), ("1500m", 2), ("1e3", 1000), ("1E3", 1000), ("2Gi", 2 * 2 ** 30),
    ("1.5Gi", 3 * 2 ** 29), ("0.5G", 500_000_000), ("1T", 10 ** 12), ("1Ti", 2 ** 40), ("1P", 10 ** 15),
    ("1Pi", 2 ** 50), ("1024Ti", 2 ** 50), ("1Ki", 1024), ("+1k", 1000), (".5k", 500),
    ("1.", 1), ("12e-1", 2), (" 512Mi ", 512 * 2 ** 20),
])
def test_memory_quantities(quantity, size):
    assert memory_to_bytes(quantity) == size


@pytest.mark.parametrize("quantity", ["", "abc", "1 Gi", "1GB", "1gi", "Gi", "1K", "1e", "1.2.3", "--1", "1Gi1",
                                      "-1Gi", "-5", "1e-400", "0x10"])
def test_memory_invalid(quantity):
    with pytest.raises(MemoryRequestError) as caught:
        memory_to_bytes(quantity)
    assert caught.value.message == f"Incorrect memory request {quantity}. Please check memory specs: {MEMORY_DOCS}"
    assert caught.value.status == 400


def test_nothing_requested():
    assert validate_resources() == Resources(None, None, None, None)
    assert validate_resources("", "", "", max_cpu=1, max_memory=1, max_gpu=0) == Resources(None, None, None, None)


def test_valid_request():
    assert validate_resources("0.5", "512Mi", "1", max_cpu=2, max_memory=1, max_gpu=1) == \
        Resources(0.5, "512Mi", 512 * 2 ** 20, 1)
    assert validate_resources("500m").cpu == 0.5
    assert validate_resources(2).cpu == 2.0


def test_no_maximum_means_no_check():
    assert validate_resources("512", "1Ti", "16").gpu == 16


def test_zero_maxima_of_cpu_and_memory_mean_no_check():
    assert validate_resources("64", "1Ti", max_cpu=0, max_memory=0).cpu == 64


def test_cpu_too_high():
    with pytest.raises(CpuRequestError, match=r"^CPU request 8 too high. Maximum allowed is 4.$"):
        validate_resources("8", max_cpu=4)
    with pytest.raises(CpuRequestError, match=r"Maximum allowed is 3.5."):
        validate_resources("3.6", max_cpu=3.5)


@pytest.mark.parametrize("cpu", ["-1", "abc", "nan", "1 m", "inf", "-1e999"])
def test_cpu_invalid(cpu):
    with pytest.raises(CpuRequestError, match=f"Incorrect CPU request {cpu}"):
        validate_resources(cpu)


def test_memory_too_high():
    with pytest.raises(MemoryRequestError, match=r"^Memory request 3Gi too high. Maximum allowed is 2Gi.$"):
        validate_resources(memory="3Gi", max_memory=2)
    with pytest.raises(MemoryRequestError, match=r"Maximum allowed is 1.5Gi."):
        validate_resources(memory="1600Mi", max_memory=1.5)
    assert validate_resources(memory="2Gi", max_memory=2).memory_bytes == 2 * 2 ** 30


def test_gpu_unknown_maximum_allows_gpus():
    assert validate_resources(gpu="2", max_gpu=None).gpu == 2


def test_gpu_zero_maximum():
    with pytest.raises(GpuRequestError, match="^GPUs are not enabled$"):
        validate_resources(gpu="1", max_gpu=0)
    assert validate_resources(gpu="0", max_gpu=0).gpu == 0


def test_gpu_above_maximum():
    with pytest.raises(GpuRequestError, match="GPU request 3 too high. Maximum allowed is 2."):
        validate_resources(gpu=3, max_gpu=2)


@pytest.mark.parametrize("gpu", ["-1", "1.5", "one", "+1", " 1", "01", "1_0", "\u0661"])
def test_gpu_invalid(gpu):
    with pytest.raises(GpuRequestError, match=f"Incorrect GPU request {re.escape(gpu)}") as caught:
        validate_resources(gpu=gpu)
    assert caught.value.status == 400


@pytest.mark.parametrize("cpu", ["0.0001", "0.009", "9m", "1m", 0.001, "1e-3"])
def test_cpu_below_the_minimum_is_refused_giving_it(cpu):
    with pytest.raises(CpuRequestError) as caught:
        validate_resources(cpu, max_cpu=4)
    assert caught.value.message == f"CPU request {cpu} too low. Minimum allowed is 0.01 (10m)."
    assert (caught.value.status, caught.value.code) == (400, "CPU_REQUEST_ERROR")


@pytest.mark.parametrize("memory", ["1", "100m", "500k", "4Mi", "6291455", "6M", "0.005Gi"])
def test_memory_below_the_minimum_is_refused_giving_it(memory):
    with pytest.raises(MemoryRequestError) as caught:
        validate_resources(memory=memory, max_memory=2)
    assert caught.value.message == f"Memory request {memory} too low. Minimum allowed is 6Mi."
    assert (caught.value.status, caught.value.code) == (400, "MEMORY_REQUEST_ERROR")


def test_the_minimums_themselves_are_accepted():
    assert validate_resources("0.01", "6Mi") == Resources(0.01, "6Mi", 6 * 2 ** 20, None)
    assert validate_resources("10m", "6291456").memory_bytes == 6 * 2 ** 20


@pytest.mark.parametrize("cpu, memory", [("0", "0"), (0, 0), (0.0, "0Mi"), ("0m", "0e3"), ("0.0", "0k")])
def test_zero_cpu_or_memory_is_not_given(cpu, memory):
    # what the executors have always made of 0: no limit (local.py: `spec.cpu or None`, a 0-byte memory: none)
    assert validate_resources(cpu, memory, max_cpu=1, max_memory=1) == Resources(None, None, None, None)


@pytest.mark.parametrize("cpu, memory, gpu, message", [
    ("1e308", None, None, "CPU request 1e308 too high. Maximum allowed is 1024."),
    ("1e999", None, None, "CPU request 1e999 too high. Maximum allowed is 1024."),
    ("1024001m", None, None, "CPU request 1024001m too high. Maximum allowed is 1024."),
    (None, "99999999999999999999Gi", None, "Memory request 99999999999999999999Gi too high. Maximum allowed is 1Pi."),
    (None, "1e400", None, "Memory request 1e400 too high. Maximum allowed is 1Pi."),
    (None, "10Ei", None, "Memory request 10Ei too high. Maximum allowed is 1Pi."),
    (None, "1125899906842625", None, "Memory request 1125899906842625 too high. Maximum allowed is 1Pi."),
    (None, None, "65", "GPU request 65 too high. Maximum allowed is 64."),
    (None, None, "1" + "0" * 30, f"GPU request 1{'0' * 30} too high. Maximum allowed is 64."),
])
def test_beyond_the_platform_bounds_whatever_the_configured_maxima(cpu, memory, gpu, message):
    with pytest.raises((CpuRequestError, MemoryRequestError, GpuRequestError)) as caught:
        validate_resources(cpu, memory, gpu, max_cpu=1e9, max_memory=1e9, max_gpu=10 ** 9)
    assert (caught.value.message, caught.value.status) == (message, 400)


def test_the_platform_bounds_themselves_convert_within_every_executor(tmp_path):
    from kaos_backend.executors import cgroups
    from kaos_backend.executors.docker_spec import resource_limits
    from kaos_backend.executors.group import Limits
    from kaos_backend.executors.kubernetes_pod import cpu_quantity
    request = validate_resources("1024", "1Pi", "64")
    assert request == Resources(1024.0, "1Pi", 2 ** 50, 64)
    assert validate_resources("0e999", "0e999").cpu is None  # zero is not given, whatever its exponent
    limits = resource_limits(request.cpu, request.memory_bytes, request.gpu)
    assert limits["nano_cpus"] == 1024 * 10 ** 9 < 2 ** 63 and limits["mem_limit"] == 2 ** 50
    assert cpu_quantity(request.cpu) == "1024"
    limits = Limits(request.memory_bytes, request.memory, request.cpu)
    paths = {name: str(tmp_path / "v1" / name) for name in ("memory", "cpu")}
    for path in [*paths.values(), tmp_path / "v2"]:
        os.makedirs(path)
    cgroups.CgroupV1Group("job", limits, paths)._set_limits()
    cgroups.CgroupV2Group("job", limits, str(tmp_path / "v2"), True)._set_limits()
    assert (tmp_path / "v1" / "cpu" / "cpu.cfs_quota_us").read_text().strip() == str(1024 * 100_000)
    assert (tmp_path / "v1" / "memory" / "memory.limit_in_bytes").read_text().strip() == str(2 ** 50)
    assert (tmp_path / "v2" / "cpu.max").read_text().strip() == f"{1024 * 100_000} 100000"
