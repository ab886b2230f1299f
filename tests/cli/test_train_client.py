"""KaosClient's train routes against a real HTTP server on 127.0.0.1 (streams included)."""
import hashlib
import json
import threading
import time

import pytest

from kaos_cli.client import KILL_READ_TIMEOUT, KaosClient
from kaos_cli.errors import KaosError, RequestError, UnexpectedAnswer
from kaos_model.wire import (BundleUpload, JobInfo, JobInfoPage, JobRecord, SubmissionInfo, TrainJobListing,
                             TrainPipelineInfo)
from tests.support import answers

JSON = "application/json"
JOB = "7a74b6974ba346238baf0a5f397774df"


@pytest.fixture
def source_zip(tmp_path):
    path = tmp_path / "source.zip"
    path.write_bytes(b"PK source bytes" * 100)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_train_source_streams_with_resources(server, source_zip):
    path, digest = source_zip
    server.route("POST", "train/ws", body={"glob_name": "mnist:1909d", "job_id": JOB})
    answer = KaosClient(server.url, "t", "alice").upload_train_source("ws", path, cpu=0.5, memory="1Gi", gpu=0)
    assert answer == BundleUpload(glob_name="mnist:1909d", extra={"job_id": JOB}) and answer.job_id == JOB
    blob, upload = server.requests
    assert blob.path == f"/api/blobs/{digest}"
    assert upload.body == path.read_bytes() and upload.headers["content-type"] == "application/zip"
    assert upload.query == {"cpu": ["0.5"], "memory": ["1Gi"], "gpu": ["0"], "user": ["alice"]}


def test_upload_train_source_by_digest(server, source_zip):
    path, digest = source_zip
    server.route("GET", f"blobs/{digest}", body={"digest": digest, "size": 1})
    server.route("POST", "train/ws", body={"glob_name": "mnist:1909d", "job_id": None})
    assert KaosClient(server.url, "t").upload_train_source("ws", path).job_id is None
    upload, = server.requests_to("POST", "train/ws")
    assert upload.body == b"" and upload.query == {"digest": [digest]}


def test_train_list_inspect_and_job_state(server):
    server.route("GET", "train/ws", body=answers.train_listing([answers.submission("a")]))
    server.route("GET", "train/ws/inspect", body=answers.inspect_answer("none"))
    server.route("GET", f"job/ws/{JOB}", body=answers.job_record(JOB))
    client = KaosClient(server.url, "t")
    listing = client.train_list("ws")
    assert isinstance(listing, TrainJobListing) and listing.continue_token is None
    assert [job.job_id for job in listing.training] == ["a"] and listing.building == listing.ingesting == []
    assert isinstance(listing.training[0], SubmissionInfo)
    inputs = client.train_inspect("ws")
    assert isinstance(inputs, TrainPipelineInfo) and inputs.image_state == "none" and inputs.image == "image:null"
    record = client.job_state("ws", JOB)
    assert isinstance(record, JobRecord) and record.state == "JOB_SUCCESS" and record.kind == "train"


def test_a_listing_without_one_of_its_lists_is_an_unexpected_answer(server):
    server.route("GET", "train/ws", body={"response": {"training": [], "building": None, "ingesting": []}})
    with pytest.raises(UnexpectedAnswer, match="not a TrainJobListing: building: expected a JSON array"):
        KaosClient(server.url, "t").train_list("ws")


def test_train_info_query(server):
    server.route("GET", f"train/ws/{JOB}", body={"page_id": 1, "page_count": 2, "response": {
        "job_id": JOB, "state": "JOB_SUCCESS", "available_metrics": ["loss"], "process_time": 3, "partitions": []}})
    client = KaosClient(server.url, "t")
    page = client.train_info("ws", JOB)
    assert isinstance(page, JobInfoPage) and page.page_count == 2 and isinstance(page.response, JobInfo)
    assert page.response.available_metrics == ["loss"] and page.response.failed_partitions == []
    assert client.train_info("ws", JOB, sort_by="loss", page_id=1, ascending=True).page_id == 1
    plain, sorted_ = server.requests_to("GET", f"train/ws/{JOB}")
    assert plain.query == {"page_id": ["0"]}
    assert sorted_.query == {"sort_by": ["loss"], "page_id": ["1"], "ascending": ["true"]}


def test_logs_without_follow_are_the_json_string(server):
    server.route("GET", f"train/ws/{JOB}/logs", body=json.dumps("[2019-07-29 15:08:36] a\n[2019-07-29 15:08:37] b"))
    server.route("GET", f"train/ws/build/{JOB}/logs", body=None)
    client = KaosClient(server.url, "t")
    assert client.train_logs("ws", JOB) == "[2019-07-29 15:08:36] a\n[2019-07-29 15:08:37] b"
    assert client.train_build_logs("ws", JOB) == ""


def test_follow_yields_lines_as_they_arrive(server):
    """The second chunk is only sent once the first line has reached the caller."""
    first_line_read = threading.Event()

    def stream(request):
        def chunks():
            yield "[t] one\n[t] tw"
            assert first_line_read.wait(10), "the client did not see the first line before the stream ended"
            yield "o\n"
            yield "[t] three\n"
        return 200, chunks(), "text/plain"

    server.handle("GET", f"train/ws/{JOB}/logs", stream)
    lines = KaosClient(server.url, "t").train_logs("ws", JOB, follow=True)
    assert next(lines) == "[t] one"
    first_line_read.set()
    assert list(lines) == ["[t] two", "[t] three"]
    request, = server.requests
    assert request.query["follow"] == ["true"]


def test_follow_has_no_read_timeout(server):
    def slow(request):
        def chunks():
            yield "[t] start\n"
            time.sleep(0.6)
            yield "[t] end\n"
        return 200, chunks(), "text/plain"

    server.handle("GET", f"train/ws/build/{JOB}/logs", slow)
    client = KaosClient(server.url, "t", timeout=0.2)
    assert list(client.train_build_logs("ws", JOB, follow=True)) == ["[t] start", "[t] end"]


def test_follow_errors_are_raised_by_the_call(server):
    server.route("GET", f"train/ws/{JOB}/logs", 404,
                 {"error_code": "JOB_NOT_FOUND", "message": f"There is no job with id: {JOB}"})
    with pytest.raises(RequestError, match="There is no job with id"):
        KaosClient(server.url, "t").train_logs("ws", JOB, follow=True)


def test_follow_of_a_backend_that_answers_json(server):
    server.route("GET", f"train/ws/{JOB}/logs", body=json.dumps("[t] a\n[t] b"))
    assert list(KaosClient(server.url, "t").train_logs("ws", JOB, follow=True)) == ["[t] a", "[t] b"]


def test_follow_interrupted_is_a_kaos_error(server):
    def broken(request):
        def chunks():
            yield "[t] a\n"
            raise ConnectionAbortedError("backend went away")  # the handler dies: no terminating chunk
        return 200, chunks(), "text/plain"

    server.handle("GET", f"train/ws/{JOB}/logs", broken)
    lines = KaosClient(server.url, "t").train_logs("ws", JOB, follow=True)
    with pytest.raises(KaosError, match="was interrupted"):
        list(lines)


def test_kill_waits_longer_than_the_read_timeout(server):
    assert KILL_READ_TIMEOUT >= 40

    def slow_kill(request):
        time.sleep(0.5)
        return 200, None, JSON

    server.handle("DELETE", f"train/ws/{JOB}", slow_kill)
    assert KaosClient(server.url, "t", timeout=0.2).train_kill("ws", JOB) is None


def test_kill_errors(server):
    server.route("DELETE", f"train/ws/{JOB}", 400,
                 {"error_code": "JOB_NOT_RUNNING", "message": f"Job is not running, id: {JOB}"})
    with pytest.raises(RequestError) as problem:
        KaosClient(server.url, "t").train_kill("ws", JOB)
    assert (str(problem.value), problem.value.error_code) == (f"Job is not running, id: {JOB}", "JOB_NOT_RUNNING")
