"""A request must fit one node whole (kaos_backend.resources.check_fits_one): the largest cpu, memory and GPUs of
any node, each on its own, are not one node's."""
import pytest

from kaos_backend.errors import CpuRequestError, MemoryRequestError
from kaos_backend.resources import check_fits_one, validate_resources

NODES = ((4.0, 8.0, 0), (2.0, 64.0, 0), (1.0, 4.0, 1))


@pytest.mark.parametrize("cpu, memory, gpu", [("3", "8Gi", None), ("2", "64Gi", None), ("1", "4Gi", "1"),
                                              ("4", None, None), (None, "64Gi", None), (None, None, "1"),
                                              (None, None, None)])
def test_a_request_one_node_has_whole_passes(cpu, memory, gpu):
    check_fits_one(validate_resources(cpu, memory, gpu), NODES)


@pytest.mark.parametrize("cpu, memory, gpu, error", [("3", "16Gi", None, CpuRequestError),
                                                     (None, "8Gi", "1", MemoryRequestError),
                                                     ("2", None, "1", CpuRequestError)])
def test_a_request_no_node_has_whole_is_refused_saying_so(cpu, memory, gpu, error):
    with pytest.raises(error) as refused:
        check_fits_one(validate_resources(cpu, memory, gpu), NODES)
    assert refused.value.message.startswith("No node has ") and "runs on one node" in refused.value.message


def test_nodes_not_known_refuse_nothing():
    check_fits_one(validate_resources("64", "1Ti", "8"), ())
    check_fits_one(validate_resources("3", "16Gi"), ((None, None, 0),))  # a node whose quantities were unreadable
