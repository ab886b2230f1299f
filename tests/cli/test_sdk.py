"""The Python SDK (docs/sdk.md) against a real backend: the page's worked example, step by step, asserting the
wire classes every call returns; and connecting from a project's `.kaos/`."""
import json
import textwrap
from pathlib import Path

import pytest

from kaos_cli import (BundleUpload, EndpointListing, HealthInfo, JobInfo, JobInfoPage, JobRecord, KaosClient,
                      ModelInfo, NamesPage, ParamsUpload, PartitionInfo, RequestError, ServeInfo, SubmissionInfo,
                      TrainJobListing, TrainPipelineInfo, WorkspaceCreated, WorkspaceInfo)
from kaos_cli.bundles import zip_directory
from tests.support.cli import kaos
from tests.support.tiny_bundles import data_folder, serve_source, train_source


@pytest.fixture
def bundles(tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"scale": [2, 3]}))
    return {"source": zip_directory(train_source(tmp_path / "train"), tmp_path / "train.zip", progress=False),
            "serve": zip_directory(serve_source(tmp_path / "serve"), tmp_path / "serve.zip", progress=False),
            "data": zip_directory(data_folder(tmp_path / "data"), tmp_path / "data.zip", progress=False),
            "params": params}


def test_the_worked_example_returns_wire_objects(backend, bundles):
    client = KaosClient(backend.url, token=backend.token, user="alice", progress=False)
    assert isinstance(client.health(), HealthInfo) and client.health().status == "ok"

    # create a workspace
    created = client.create_workspace("sdk")
    assert isinstance(created, WorkspaceCreated) and created.build_train == "build-train-sdk"
    assert isinstance(created.info, WorkspaceInfo) and created.info.name == "sdk"
    names = client.list_workspaces()
    assert isinstance(names, NamesPage) and names == ["sdk"] and names.continue_token is None
    info = client.workspace_info("sdk")
    assert isinstance(info, WorkspaceInfo) and "build-train-sdk" in info.pipelines

    # one deploy of source, data and hyperparameters: every upload but the last says inputs_follow (docs/sdk.md).
    # The image is built before the data arrives here, as when mnist's data takes its time to upload: uploaded
    # without inputs_follow, source and data started a training of their own, and `training[0]` was no grid
    source = client.upload_train_source("sdk", bundles["source"], inputs_follow=True)
    assert isinstance(source, BundleUpload) and source.glob_name.startswith("tiny:") and source.job_id
    build = client.wait_for_job("sdk", source.job_id, timeout=300)
    assert isinstance(build, JobRecord) and build.kind == "build-train" and build.state == "JOB_SUCCESS", build
    data = client.upload_features("sdk", bundles["data"], inputs_follow=True)
    assert isinstance(data, BundleUpload) and data.glob_name.startswith("features:") and data.job_id is None
    params = client.upload_params("sdk", bundles["params"], parallelism=2)
    assert isinstance(params, ParamsUpload) and params.params == [{"scale": 2}, {"scale": 3}]
    inputs = client.train_inspect("sdk")
    assert isinstance(inputs, TrainPipelineInfo) and inputs.data_glob == f"/{data.glob_name}"
    assert inputs.hyper_glob == f"/{params.glob_name}/*" and inputs.parallelism == 2

    # train, and wait
    from kaos_cli import wait_until

    training = wait_until(lambda: client.train_list("sdk").training, timeout=120, what="the train job")[0]
    assert isinstance(training, SubmissionInfo) and training.hyperopt == "True"
    done = client.wait_for_job("sdk", training.job_id, timeout=300)
    assert done.state == "JOB_SUCCESS", done
    assert [job.job_id for job in client.train_list("sdk").training] == [training.job_id]  # one deploy, one training
    listing = client.train_list("sdk", limit=1)
    assert isinstance(listing, TrainJobListing) and listing.continue_token is None
    assert [job.job_id for job in listing.building] == [source.job_id]

    # list the models, best first
    page = client.train_info("sdk", training.job_id, sort_by="accuracy")
    assert isinstance(page, JobInfoPage) and isinstance(page.response, JobInfo)
    assert (page.page_id, page.page_count) == (0, 1) and page.response.available_metrics == ["accuracy"]
    best, other = page.response.partitions
    assert isinstance(best, PartitionInfo) and (best.score, other.score) == ("0.3000", "0.2000")
    assert best.hyperparams.values == {"scale": 3} and best.output.model_id == best.output.path
    assert page.response.failed_partitions == [] and page.response.failed_count == 0

    # serve the best model, and predict
    served = client.upload_serve_source("sdk", bundles["serve"], model_id=best.output.model_id)
    assert isinstance(served, BundleUpload) and served.endpoint.startswith("serve-sdk-")
    endpoint = client.wait_for_endpoint("sdk", served.endpoint, timeout=300)
    assert isinstance(endpoint, ServeInfo) and endpoint.state == "PIPELINE_RUNNING"
    assert isinstance(endpoint.model, ModelInfo) and endpoint.model.model_id == best.output.model_id
    answer = client.invoke(served.endpoint, data=b"7")
    assert answer.status_code == 200 and answer.text == "21"
    endpoints = client.serve_list("sdk")
    assert isinstance(endpoints, EndpointListing) and [e.name for e in endpoints.endpoints] == [served.endpoint]

    client.serve_kill("sdk", served.endpoint)
    with pytest.raises(RequestError) as gone:
        client.invoke(served.endpoint, data=b"7")
    assert gone.value.error_code == "PIPELINE_NOT_FOUND"


def test_a_client_from_the_project_directory(backend, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    assert kaos(project, "init", "-e", backend.url, "-t", backend.token).code == 0
    client = KaosClient.from_project(project)
    assert (client.url, client.token, client.user) == (backend.url, backend.token, "tester")
    assert client.list_workspaces() == []


def test_a_client_from_a_directory_without_kaos_init(tmp_path):
    from kaos_cli import KaosError

    with pytest.raises(KaosError, match=r"config does not exist - run kaos init, or give the endpoint and token"):
        KaosClient.from_project(tmp_path)


def test_the_sdk_page_runs_the_same_example():
    """docs/sdk.md's worked example calls what the test above calls (a renamed method would be caught here)."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "sdk.md").read_text()
    example = page.split("## Worked example", 1)[1]
    for call in ("create_workspace(", "upload_train_source(", "upload_features(", "wait_for_job(",
                 "train_list(", "train_info(", "upload_serve_source(", "wait_for_endpoint(", "invoke("):
        assert call in example, call
    assert textwrap.dedent("from kaos_cli import KaosClient") in page


def test_the_sdk_page_example_fits_the_mnist_template():
    """Its paths are the mnist template's, its metric one the template's train writes (`sort_by="accuracy"` was
    not: `Metric accuracy not found`), and its uploads one deploy (inputs_follow on all but the last)."""
    import re

    repo = Path(__file__).resolve().parents[2]
    example = (repo / "docs" / "sdk.md").read_text().split("## Worked example", 1)[1].split("```python", 1)[1]
    example = example.split("```", 1)[0]
    template = repo / "templates" / "mnist"
    for path in re.findall(r'zip_directory\("([^"]+)"', example) + re.findall(r'open\("([^"]+)"', example) + \
            re.findall(r'upload_params\("mnist", "([^"]+)"', example):
        assert (template / path).exists(), path
    train = (template / "model-train" / "mnist" / "model" / "train").read_text()
    assert '"accuracy_" + split' in train
    splits = set(re.findall(r'evaluate\([^)]*"(\w+)", metrics\)', train))
    sort_by, = re.findall(r'sort_by="([^"]+)"', example)
    assert sort_by in {f"accuracy_{split}" for split in splits}, (sort_by, splits)
    uploads = re.findall(r"client\.upload_(train_source|features|params)\((.*)\n", example)
    assert [name for name, _ in uploads] == ["train_source", "features", "params"]
    assert ["inputs_follow=True" in arguments for _, arguments in uploads] == [True, True, False]
