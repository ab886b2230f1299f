"""The completion fetches read the client's answers in the types `KaosClient` returns them (a NamesPage of
workspace names, `kaos_model.wire` objects for the rest)."""
import pytest

from kaos_cli import completion
from kaos_cli.client import NamesPage
from kaos_model import wire

JOB = {"job_id": "a1", "state": "JOB_SUCCESS", "started": "2024-01-01 00:00:00", "duration": 3, "progress": "1/1"}
BUILD = dict(JOB, job_id="b2")
DESCRIPTOR = {"repo": "r", "commit": "c", "path": "p"}
PARTITION = {"datum_id": "d-1", "code": DESCRIPTOR, "data": DESCRIPTOR, "image": DESCRIPTOR,
             "output": dict(DESCRIPTOR, path="1909d_5c3ca:828c4e", model_id="1909d_5c3ca:828c4e")}
ENDPOINT = {"name": "serve-mnist-53d3da", "url": "u", "user": "tester", "state": "PIPELINE_RUNNING",
            "created_at": "2024-01-01 00:00:00"}


class WireClient:
    """The answers of `KaosClient`'s list and info methods, in its return types."""

    def list_workspaces(self, **_):
        return NamesPage(["mnist", "other"])

    def train_list(self, workspace, **_):
        return wire.TrainJobListing.from_dict({"training": [JOB], "building": [BUILD], "ingesting": []})

    def serve_list(self, workspace, **_):
        return wire.EndpointListing.from_dict({"endpoints": [ENDPOINT], "building": [BUILD]})

    def train_info(self, workspace, job_id, page_id=0, **_):
        return wire.JobInfoPage.from_dict({"page_id": page_id, "page_count": 1, "response": {
            "job_id": job_id, "state": "JOB_SUCCESS", "available_metrics": [], "process_time": 1,
            "partitions": [PARTITION]}})


@pytest.mark.parametrize("fetch, expected", [
    (completion._fetch_workspaces, ["mnist", "other"]),
    (completion._fetch_jobs(("training", "building")), ["a1", "b2"]),
    (completion._fetch_jobs(("building",)), ["b2"]),
    (completion._fetch_serve_builds, ["b2"]),
    (completion._fetch_endpoints, ["serve-mnist-53d3da"]),
    (completion._fetch_models(None), ["1909d_5c3ca:828c4e"]),
    (completion._fetch_models("a1"), ["1909d_5c3ca:828c4e"]),
])
def test_fetches_read_the_clients_answers(fetch, expected):
    found = []
    fetch(WireClient(), "mnist", found)
    assert [value for value, _ in found] == expected
