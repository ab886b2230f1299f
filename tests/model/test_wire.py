"""kaos_model.wire: 1.x's field sets exactly, strict decoding of what 1.x requires, our additions in `extra`."""
import pytest

from kaos_model import wire
from kaos_model.wire import (DataDescriptor, JobInfo, PartitionInfo, ServeInfo, SubmissionInfo, TrainPipelineInfo,
                             WireError, WorkspaceInfo)

# Reference §5.1: the field lists of kaos 1.x's kaos_model, in order.
FIELDS_1X = {
    "DataDescriptor": ["repo", "commit", "path", "branch", "author"],
    "PartitionInfo": ["datum_id", "code", "data", "image", "output", "score", "hyperparams"],
    "SubmissionInfo": ["job_id", "state", "started", "duration", "progress", "hyperopt"],
    "JobInfo": ["job_id", "state", "available_metrics", "process_time", "partitions"],
    "ModelInfo": ["user", "commit_id", "size", "path", "base_path", "model_id", "created_at"],
    "ServeInfo": ["name", "url", "user", "state", "created_at", "code", "image", "model"],
    "WorkspaceInfo": ["name", "pipelines", "repos"],
    "TrainJobListing": ["training", "building", "ingesting"],
    "Error": ["error_code", "message"],
    "Response": ["response"],
    "PagedResponse": ["page_id", "page_count", "response"],
}
OPTIONAL_1X = {"DataDescriptor": {"branch", "author"}, "PartitionInfo": {"score", "hyperparams"},
               "SubmissionInfo": {"hyperopt"}, "ServeInfo": {"code", "image", "model"}}


def descriptor(**changes):
    return {"repo": "source-train-ws", "commit": "0" * 32, "path": "/mnist:1909d", **changes}


def partition(**changes):
    return {"datum_id": "d", "code": descriptor(), "data": descriptor(path="/features:9fd9d"),
            "image": descriptor(path="/build-train-ws:1909d"), "output": descriptor(path="1909d_9fd9d:828c4e"),
            **changes}


def job(**changes):
    return {"job_id": "j", "state": "JOB_SUCCESS", "available_metrics": ["accuracy"], "process_time": 3,
            "partitions": [partition()], **changes}


@pytest.mark.parametrize("name", sorted(FIELDS_1X))
def test_each_class_declares_exactly_the_1x_fields(name):
    declared = getattr(wire, name).wire_fields()
    assert [field for field, _, _ in declared] == FIELDS_1X[name]
    assert {field for field, _, required in declared if not required} == OPTIONAL_1X.get(name, set())


def test_unknown_keys_travel_in_extra_both_ways():
    data = {"name": "a", "pipelines": [], "repos": ["r"], "extra": 1, "created": "now"}
    info = WorkspaceInfo.from_dict(data)
    assert info.extra == {"extra": 1, "created": "now"}
    assert info.to_dict() == data


def test_nested_objects_are_decoded_and_round_trip():
    data = job(partitions=[partition(score="0.9712", metrics={"accuracy": 0.97},
                                     output=descriptor(path="m:1", branch="m", model_id="m:1"))],
               reason=None, failed_count=0)
    decoded = JobInfo.from_dict(data)
    assert isinstance(decoded.partitions[0], PartitionInfo)
    assert isinstance(decoded.partitions[0].output, DataDescriptor)
    assert decoded.partitions[0].output.extra == {"model_id": "m:1"}
    assert decoded.partitions[0].hyperparams is None
    expected = dict(data)
    expected["partitions"] = [dict(data["partitions"][0], hyperparams=None)]
    for key in ("code", "data", "image"):
        expected["partitions"][0][key] = dict(data["partitions"][0][key], branch="master", author=None)
    expected["partitions"][0]["output"] = dict(data["partitions"][0]["output"], author=None)
    assert decoded.to_dict() == expected


@pytest.mark.parametrize("data, message", [
    (job(partitions=[partition(output={"commit": "c", "path": "p"})]),
     "partitions[0].output.repo: missing, and DataDescriptor requires it"),
    ({k: v for k, v in job().items() if k != "process_time"}, "process_time: missing"),
    (job(process_time="130"), "process_time: expected int, got str '130'"),
    (job(process_time=True), "process_time: expected int, got bool"),
    (job(available_metrics="accuracy"), "available_metrics: expected a JSON array"),
    (job(partitions=[partition(score=0.97)]), "partitions[0].score: expected str, got float"),
    (job(partitions=[partition(hyperparams={"repo": 1, "commit": "c", "path": "p"})]),
     "partitions[0].hyperparams.repo: expected str, got int"),
    (["not", "an", "object"], "expected a JSON object (JobInfo), got list"),
])
def test_what_1x_requires_is_required(data, message):
    with pytest.raises(WireError) as raised:
        JobInfo.from_dict(data)
    assert message in str(raised.value)


def test_optional_fields_take_null_and_default_when_absent():
    serve = ServeInfo.from_dict({"name": "n", "url": "u", "user": "x", "state": "s", "created_at": "t",
                                 "model": None})
    assert (serve.code, serve.image, serve.model) == (None, None, None)
    assert serve.to_dict()["model"] is None  # 1.x sent null for a missing optional, never left it out
    assert SubmissionInfo.from_dict({"job_id": "j", "state": "s", "started": "t", "duration": 0,
                                     "progress": "p"}).hyperopt is None


def test_extra_never_replaces_a_1x_field():
    with pytest.raises(ValueError, match="declared field 'state'"):
        SubmissionInfo("j", "JOB_SUCCESS", "t", 0, "p", extra={"state": "other"}).to_dict()


def test_inspect_names_missing_inputs_as_1x_did():
    assert (wire.NO_IMAGE, wire.NO_DATA, wire.NO_HYPERPARAMS, wire.NO_BRANCH) == \
        ("image:null", "data:null", "params.null", "null")
    assert [name for name, _, _ in TrainPipelineInfo.wire_fields()][:8] == [
        "image", "commands", "description", "parallelism", "output_branch", "cpu", "memory", "gpu"]


# -- what the SDK reads (issue 8, item 8) -----------------------------------------------------------------------
def test_our_additions_read_as_attributes_and_still_round_trip():
    answer = {"job_id": "j", "state": "JOB_FAILURE", "started": "2024-01-01 00:00:00", "duration": 3,
              "progress": "Progress: 0 / 1 (0%)\n1 failed", "hyperopt": "False", "reason": "exit code 1"}
    job = SubmissionInfo.from_dict(answer)
    assert job.reason == "exit code 1" and job.to_dict() == answer
    assert SubmissionInfo.from_dict(dict(answer, reason=None)).reason is None
    del answer["reason"]
    assert SubmissionInfo.from_dict(answer).reason is None  # a 1.x server: the attribute is None


def test_a_job_infos_failed_partitions_decode_strictly():
    info = {"job_id": "j", "state": "JOB_KILLED", "available_metrics": [], "process_time": 1, "partitions": [],
            "failed_partitions": [dict(partition(), state="JOB_FAILURE", reason="boom")], "failed_count": 7}
    job = JobInfo.from_dict(info)
    failed, = job.failed_partitions
    assert isinstance(failed, PartitionInfo) and (failed.state, failed.reason) == ("JOB_FAILURE", "boom")
    assert job.failed_count == 7 and job.to_dict() == info
    with pytest.raises(WireError, match=r"failed_partitions\[0\]\.code: missing"):
        JobInfo.from_dict(dict(info, failed_partitions=[{"datum_id": "d"}])).failed_partitions


def test_job_info_page_is_a_paged_response_of_a_job_info():
    page = wire.JobInfoPage.from_dict({"page_id": 0, "page_count": 1, "response": {
        "job_id": "j", "state": "JOB_SUCCESS", "available_metrics": [], "process_time": 1, "partitions": []}})
    assert isinstance(page, wire.PagedResponse) and isinstance(page.response, JobInfo)
    with pytest.raises(WireError, match="response.partitions: missing"):
        wire.JobInfoPage.from_dict({"page_id": 0, "page_count": 1, "response": {
            "job_id": "j", "state": "JOB_SUCCESS", "available_metrics": [], "process_time": 1}})


def test_a_listings_continue_token_is_not_part_of_its_json():
    listing = wire.TrainJobListing.from_dict({"training": [], "building": [], "ingesting": []})
    assert listing.continue_token is None
    listing.continue_token = "abc"
    assert listing.to_dict() == {"training": [], "building": [], "ingesting": []}
    assert wire.EndpointListing(endpoints=[], building=[]).continue_token is None


def test_kaos_2s_own_answers():
    record = {"job_id": "j", "kind": "build-train", "state": "JOB_RUNNING", "started": "2024-01-01 00:00:00",
              "duration": 2, "finished": None, "reason": None}
    assert wire.JobRecord.from_dict(record).to_dict() == record
    with pytest.raises(WireError, match="kind: missing"):
        wire.JobRecord.from_dict({key: value for key, value in record.items() if key != "kind"})
    assert wire.HealthInfo.from_dict({}).status is None  # any 2xx answer of /health means "up"
    created = wire.WorkspaceCreated.from_dict({"build_train": "build-train-ws", "response": {
        "name": "ws", "pipelines": [], "repos": []}})
    assert created.info == WorkspaceInfo(name="ws", pipelines=[], repos=[])
    assert wire.BundleUpload.from_dict({"glob_name": "g", "job_id": "j"}).job_id == "j"
    assert wire.BundleUpload.from_dict({"glob_name": "g"}).endpoint is None
    assert TrainPipelineInfo.wire_fields()[-1][0] == "hyper_glob"  # image_state stays an addition
