"""`kaos train get` and `kaos train provenance` in the backend: `TrainService.bundle` / `.provenance` and their
routes (`GET /api/train/<ws>/<job_id>/bundle`, `GET /api/train/<ws>/<model_id>/provenance`), over SQLite and
PostgreSQL (the `database_url` fixture runs both)."""
import io
import json
import os
import shutil
import subprocess
import zipfile
from datetime import datetime, timezone
from urllib.parse import quote

import pytest
from kaos_model import JobState
from kaos_model.ids import new_hex6, new_job_id

from kaos_backend.app import create_app
from kaos_backend.errors import BadRequest, JobNotFound, ModelNotFound, WorkspaceNotFound
from kaos_backend.models import Bundle, Job, Partition, TrainPipeline, Workspace
from kaos_backend.services.train import output_branch, safe_hyper_file
from kaos_backend.services.uploads import body_from_bytes
from tests.backend.helpers import features_zip, source_entries, source_zip, zip_bytes

TOKEN = "train-get-token"
GRID = {"degree": [3, 5]}
SUCCESS, FAILURE = JobState.JOB_SUCCESS.value, JobState.JOB_FAILURE.value


class Seeded:
    """A workspace `mnist` with a finished train job: partitions 0 and 1 succeeded (model/ and metrics/ written),
    partition 2 failed; `job_id`, `model_ids`, `hex6s`, the code/data/hyper glob names."""

    def __init__(self, services, grid=GRID, state=SUCCESS, workspace="mnist"):
        self.services = services
        self.workspace = workspace
        services.workspaces.create(workspace, user="alice")
        entries = dict(source_entries(), **{"mnist/pipeline_args.json": '{"cpu": null}'})
        self.code = services.train.submit_source(workspace, body_from_bytes(zip_bytes(entries)),
                                                 user="alice")["glob_name"]
        self.data = services.train.submit_features(workspace, body_from_bytes(features_zip()), user="bob")["glob_name"]
        self.hyper = None
        if grid:
            self.hyper = services.train.submit_params(workspace, body_from_bytes(json.dumps(grid).encode()),
                                                      user="carol")["glob_name"]
        combinations = [dict(zip(grid, values)) for values in zip(*grid.values())] if grid else [None]
        combinations = (combinations + [combinations[-1]])[:3] if grid else [None, None, None]
        self.job_id = new_job_id()
        self.hex6s = [new_hex6() for _ in range(3)]  # model ids are unique everywhere
        with services.db.session_scope() as session:
            workspace_row = session.query(Workspace).filter_by(name=workspace).one()
            pipeline = session.get(TrainPipeline, workspace_row.id)
            source, data = session.get(Bundle, pipeline.source_bundle_id), session.get(Bundle, pipeline.data_bundle_id)
            hyper = session.get(Bundle, pipeline.hyper_bundle_id) if pipeline.hyper_bundle_id else None
            self.branch = output_branch(source, data, hyper)
            finished = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
            session.add(Job(id=self.job_id, workspace_id=workspace_row.id, kind="train", state=state, user="alice",
                            source_bundle_id=source.id, data_bundle_id=data.id,
                            hyper_bundle_id=hyper.id if hyper else None, branch=self.branch,
                            started_at=finished, finished_at=finished if state == SUCCESS else None))
            session.flush()
            for index, (hex6, combination) in enumerate(zip(self.hex6s, combinations)):
                ok = index < 2
                name = "_".join(f"{k}={v}" for k, v in combination.items()) if combination else None
                session.add(Partition(job_id=self.job_id, index=index, model_id=f"{self.branch}:{hex6}",
                                      hyperparams=combination, hyper_file=f"{hyper.glob_name}/{name}.json"
                                      if combination else None, state=SUCCESS if ok else FAILURE,
                                      has_model=ok, finished_at=finished, metrics={"accuracy": 0.5 + index}))
        self.model_ids = [f"{self.branch}:{hex6}" for hex6 in self.hex6s]
        for index, hex6 in enumerate(self.hex6s):
            out = services.layout.output_dir(self.job_id, hex6)
            (out / "model").mkdir(parents=True)
            (out / "metrics").mkdir()
            (out / "model" / "model.pkl").write_bytes(f"model {index}".encode())
            (out / "metrics" / "metrics.json").write_text(json.dumps({"accuracy": 0.5 + index}))

    def out(self, index: int):
        return self.services.layout.output_dir(self.job_id, self.hex6s[index])

    def combination_file(self, index: int) -> str:
        return f"{self.hyper}/degree={GRID['degree'][index]}.json"


def members(train_bundle) -> dict:
    with zipfile.ZipFile(io.BytesIO(train_bundle.to_bytes())) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def code_members(seeded):
    return {f"code/{seeded.code}/Dockerfile", f"code/{seeded.code}/model/__init__.py",
            f"code/{seeded.code}/model/requirements.txt", f"code/{seeded.code}/model/train"}


def model_members(seeded, index):
    hex6 = seeded.hex6s[index]
    names = {f"models/{hex6}/model/model.pkl", f"models/{hex6}/metrics/metrics.json"}
    if seeded.hyper:
        names.add(f"models/{hex6}/{seeded.combination_file(index)}")
    return names


# -- bundle --------------------------------------------------------------------------------------------------------
def test_default_bundle_is_code_and_every_successful_model(services):
    seeded = Seeded(services)
    files = members(services.train.bundle("mnist", seeded.job_id))
    assert set(files) == code_members(seeded) | model_members(seeded, 0) | model_members(seeded, 1)
    assert not any("pipeline_args.json" in name for name in files)           # the original left it out
    assert not any(seeded.hex6s[2] in name for name in files)                  # the failed partition's output
    assert files[f"models/{seeded.hex6s[1]}/model/model.pkl"] == b"model 1"
    assert json.loads(files[f"models/{seeded.hex6s[1]}/{seeded.combination_file(1)}"]) == {"degree": 5}
    assert files[f"code/{seeded.code}/model/train"] == b"# train\n"


def test_data_only_and_everything(services):
    seeded = Seeded(services)
    data_only = members(services.train.bundle("mnist", seeded.job_id, include_code=False, include_data=True,
                                              include_model=False))
    assert set(data_only) == {f"data/{seeded.data}/training/train.csv", f"data/{seeded.data}/validation/valid.csv"}
    assert data_only[f"data/{seeded.data}/training/train.csv"] == b"1,2,3\n"
    everything = members(services.train.bundle("mnist", seeded.job_id, include_data=True))
    assert set(everything) == set(data_only) | code_members(seeded) | model_members(seeded, 0) | \
        model_members(seeded, 1)
    nothing = services.train.bundle("mnist", seeded.job_id, include_code=False, include_model=False)
    assert nothing.names == [] and zipfile.ZipFile(io.BytesIO(nothing.to_bytes())).namelist() == []


def test_a_job_without_hyperparameters_has_no_combination_file(services):
    seeded = Seeded(services, grid=None)
    files = members(services.train.bundle("mnist", seeded.job_id, include_code=False))
    assert set(files) == model_members(seeded, 0) | model_members(seeded, 1)


@pytest.mark.parametrize("which", ["model_id", "hex6"])
def test_one_model_by_id_or_hex6(services, which):
    seeded = Seeded(services)
    wanted = seeded.model_ids[1] if which == "model_id" else seeded.hex6s[1]
    files = members(services.train.bundle("mnist", seeded.job_id, include_code=False, model_id=wanted))
    assert set(files) == model_members(seeded, 1)
    for literal_none in ("None", ""):  # the original CLI's `model_id=None`
        assert len(services.train.bundle("mnist", seeded.job_id, include_code=False, model_id=literal_none)
                   .names) == 2 * 3


def test_model_not_found(services):
    seeded = Seeded(services)
    other = Seeded(services, workspace="other")
    for model_id in ("nope", seeded.model_ids[2], other.model_ids[0], seeded.branch):  # unknown, failed, elsewhere
        with pytest.raises(ModelNotFound, match=f"^There is no model with id: {model_id}$"):
            services.train.bundle("mnist", seeded.job_id, model_id=model_id)


def test_running_job_unknown_job_and_build_job(services):
    seeded = Seeded(services, state=JobState.JOB_RUNNING.value)
    with pytest.raises(BadRequest, match=f"^Job {seeded.job_id} is still running$"):
        services.train.bundle("mnist", seeded.job_id)
    with pytest.raises(JobNotFound, match="^There is no job with id: 0123$"):
        services.train.bundle("mnist", "0123")
    build_id = services.train.submit_source("mnist", body_from_bytes(source_zip("other")))["job_id"]
    assert build_id
    with pytest.raises(JobNotFound):
        services.train.bundle("mnist", build_id)  # a build job has no bundle of its own
    with pytest.raises(WorkspaceNotFound):
        services.train.bundle("nowhere", seeded.job_id)


def test_failed_and_killed_jobs_give_what_succeeded(services):
    seeded = Seeded(services, state=FAILURE)
    assert set(members(services.train.bundle("mnist", seeded.job_id, include_code=False))) == \
        model_members(seeded, 0) | model_members(seeded, 1)


def test_links_in_an_output_directory_are_not_followed(services, tmp_path):
    seeded = Seeded(services)
    secret = tmp_path / "secret.txt"
    secret.write_text("host file")
    os.symlink(secret, seeded.out(0) / "model" / "leak.txt")
    os.symlink(tmp_path, seeded.out(0) / "model" / "leakdir")
    (seeded.out(0) / "model" / "empty").mkdir()
    files = members(services.train.bundle("mnist", seeded.job_id, include_code=False, model_id=seeded.hex6s[0]))
    assert not any("leak" in name for name in files) and b"host file" not in b"".join(files.values())
    assert f"models/{seeded.hex6s[0]}/model/empty/" in files                  # an empty directory survives


def test_file_modes_survive(services):
    seeded = Seeded(services)
    tool = seeded.out(0) / "model" / "predict.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    archive = zipfile.ZipFile(io.BytesIO(services.train.bundle("mnist", seeded.job_id).to_bytes()))
    assert archive.getinfo(f"models/{seeded.hex6s[0]}/model/predict.sh").external_attr >> 16 & 0o777 == 0o755
    assert archive.getinfo(f"models/{seeded.hex6s[0]}/model/model.pkl").external_attr >> 16 & 0o111 == 0


def test_large_model_is_streamed_in_chunks(services):
    seeded = Seeded(services)
    payload = os.urandom(3 * 1024 * 1024 + 17)  # incompressible: the chunks are about the file's size
    (seeded.out(0) / "model" / "model.pkl").write_bytes(payload)
    chunks = list(services.train.bundle("mnist", seeded.job_id, include_code=False,
                                        model_id=seeded.hex6s[0]).chunks())
    assert len(chunks) >= 3 and max(len(chunk) for chunk in chunks) < 2 * 1024 * 1024
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None
    assert archive.read(f"models/{seeded.hex6s[0]}/model/model.pkl") == payload


def test_a_hyperparameter_value_with_a_slash_stays_one_file():
    assert safe_hyper_file("3fbf2/degree=3_kernel=poly.json") == "3fbf2/degree=3_kernel=poly.json"
    assert safe_hyper_file("3fbf2/path=../../etc/x.json") == "3fbf2/path=.._.._etc_x.json"
    assert safe_hyper_file("3fbf2/p=a\\b.json") == "3fbf2/p=a_b.json"


# -- provenance ----------------------------------------------------------------------------------------------------
def test_model_provenance(services):
    seeded = Seeded(services)
    dot = services.train.provenance("mnist", seeded.model_ids[1])
    assert dot.startswith("digraph provenance {") and dot.rstrip().endswith("}")
    for text in (f'"/{seeded.code}"', f'"/{seeded.data}"', f'"/{seeded.combination_file(1)}"',
                 f'"build-train-mnist:{seeded.code.split(":")[1]}"', f'"job {seeded.job_id}"',
                 f'"train-mnist:repo" -> "model" [label="{seeded.model_ids[1]}"]',
                 '"source-train-mnist" [shape=cylinder]', '"train-mnist" [shape=egg]', '"hyper-mnist"'):
        assert text in dot, (text, dot)
    caption = dot.splitlines()[-2]
    assert caption.startswith("  label=") and caption.endswith(";")
    assert f"/{seeded.hex6s[1]}/model/model.pkl\\nmodel: {seeded.model_ids[1]}\\nTrained model with kaos" \
           "\\nuser: alice\\ncreated_at: " in caption
    assert "serve" not in dot and "endpoint" not in dot


def test_model_provenance_without_hyperparameters_and_with_a_model_directory(services):
    seeded = Seeded(services, grid=None)
    (seeded.out(0) / "model" / "weights.bin").write_bytes(b"w")
    dot = services.train.provenance("mnist", seeded.model_ids[0])
    assert "hyper-mnist" not in dot and f'"/{seeded.data}"' in dot
    assert f'label="/{seeded.hex6s[0]}/model/\\nmodel: {seeded.model_ids[0]}' in dot  # two files: the directory


def test_model_provenance_not_found(services):
    seeded = Seeded(services)
    for model_id in ("nope", seeded.model_ids[2], seeded.hex6s[0]):
        with pytest.raises(ModelNotFound, match=f"^There is no model with id: {model_id}$"):
            services.train.provenance("mnist", model_id)
    services.workspaces.create("other")
    with pytest.raises(ModelNotFound):
        services.train.provenance("other", seeded.model_ids[0])


def test_endpoint_provenance_is_the_model_graph_and_the_serve_part(services):
    from tests.backend.helpers import SERVE_FILES
    seeded = Seeded(services)
    deployed = services.inference.deploy("mnist", seeded.model_ids[0], body_from_bytes(source_zip("web", SERVE_FILES)),
                                         user="dave")
    endpoint_dot = services.inference.provenance("mnist", deployed["endpoint"], "example.org")
    model_dot = services.train.provenance("mnist", seeded.model_ids[0])
    shared = [line for line in model_dot.splitlines()[:-2] if '"model"' not in line]
    assert all(line in endpoint_dot.splitlines() for line in shared), endpoint_dot
    for text in (f'"train-mnist:repo" -> "build-serve-mnist" [label="model {seeded.model_ids[0]}"]',
                 f'"source-serve-mnist" -> "build-serve-mnist" [label="/{deployed["glob_name"]}"]',
                 f'"{deployed["endpoint"]}" -> "endpoint" [label="example.org/{deployed["endpoint"]}/invocations"]',
                 '"endpoint" [shape=box, color=red]', "Served model with kaos", "user: dave"):
        assert text in endpoint_dot, (text, endpoint_dot)
    assert "Trained model with kaos" not in endpoint_dot
    for line in endpoint_dot.splitlines():  # every node declared once
        if "[shape=" in line:
            assert endpoint_dot.count(line) == 1, line


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_graphs_are_valid_dot(services, tmp_path):
    from tests.backend.helpers import SERVE_FILES
    seeded = Seeded(services)
    endpoint = services.inference.deploy("mnist", seeded.model_ids[0], body_from_bytes(source_zip("web", SERVE_FILES)),
                                         user="dave")["endpoint"]
    graphs = {"Trained model with kaos": services.train.provenance("mnist", seeded.model_ids[0]),
              "Served model with kaos": services.inference.provenance("mnist", endpoint, "example.org")}
    for number, (caption, dot) in enumerate(graphs.items()):
        source = tmp_path / f"{number}.dot"
        source.write_text(dot)
        result = subprocess.run(["dot", "-Tsvg", str(source)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and not result.stderr, result.stderr
        assert caption in result.stdout and seeded.model_ids[0] in result.stdout


# -- routes --------------------------------------------------------------------------------------------------------
@pytest.fixture
def app_services(make_services):
    services = make_services(token=TOKEN)
    app = create_app(services.config, services)
    client = app.test_client()
    client.environ_base["HTTP_X_TOKEN"] = TOKEN
    return client, services


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error_code"] == code
    return body["message"]


def test_bundle_route_and_its_flags(app_services):
    client, services = app_services
    seeded = Seeded(services)
    path = f"/api/train/mnist/{seeded.job_id}/bundle"
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"] == f'attachment; filename="train-{seeded.job_id}.zip"'
    names = set(zipfile.ZipFile(io.BytesIO(response.get_data())).namelist())
    assert names == code_members(seeded) | model_members(seeded, 0) | model_members(seeded, 1)
    for query in ("include_code=False&include_data=True&include_model=False",  # the original's literals
                  "include_code=false&include_data=true&include_model=0"):
        names = set(zipfile.ZipFile(io.BytesIO(client.get(f"{path}?{query}").get_data())).namelist())
        assert names == {f"data/{seeded.data}/training/train.csv", f"data/{seeded.data}/validation/valid.csv"}
    one = client.get(f"{path}?include_code=False&model_id={quote(seeded.model_ids[0], safe='')}")
    assert set(zipfile.ZipFile(io.BytesIO(one.get_data())).namelist()) == model_members(seeded, 0)
    assert_error(client.get(f"{path}?include_code=maybe"), 400, "BAD_REQUEST")


def test_bundle_route_errors(app_services):
    client, services = app_services
    seeded = Seeded(services)
    message = assert_error(client.get(f"/api/train/mnist/{seeded.job_id}/bundle?model_id=x:y"), 404,
                           "MODEL_NOT_FOUND")
    assert message == "There is no model with id: x:y"
    assert assert_error(client.get("/api/train/mnist/feed/bundle"), 404, "JOB_NOT_FOUND") == \
        "There is no job with id: feed"
    with services.db.session_scope() as session:
        session.get(Job, seeded.job_id).state = JobState.JOB_RUNNING.value
    assert assert_error(client.get(f"/api/train/mnist/{seeded.job_id}/bundle"), 400, "BAD_REQUEST") == \
        f"Job {seeded.job_id} is still running"
    assert_error(client.get(f"/api/train/mnist/{seeded.job_id}/bundle", headers={"X-Token": "wrong"}), 401,
                 "AUTHORIZATION_FAILURE")


def test_provenance_route_takes_the_colon_plain_or_encoded(app_services):
    client, services = app_services
    seeded = Seeded(services)
    for model_id in (seeded.model_ids[0], quote(seeded.model_ids[0], safe="")):
        response = client.get(f"/api/train/mnist/{model_id}/provenance")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json() == services.train.provenance("mnist", seeded.model_ids[0])
    assert assert_error(client.get(f"/api/train/mnist/{seeded.model_ids[2]}/provenance"), 404,
                        "MODEL_NOT_FOUND") == f"There is no model with id: {seeded.model_ids[2]}"
    # the neighbouring routes still answer as before
    assert client.get(f"/api/train/mnist/{seeded.job_id}").get_json()["response"]["job_id"] == seeded.job_id
    assert client.get(f"/api/train/mnist/{seeded.job_id}/logs").status_code == 200
    assert_error(client.get(f"/api/train/mnist/{seeded.model_ids[0]}/logs"), 404, "JOB_NOT_FOUND")


def test_a_file_removed_after_planning_is_left_out(services):
    seeded = Seeded(services)
    planned = services.train.bundle("mnist", seeded.job_id, include_code=False, model_id=seeded.hex6s[0])
    (seeded.out(0) / "metrics" / "metrics.json").unlink()
    files = members(planned)
    assert set(files) == model_members(seeded, 0) - {f"models/{seeded.hex6s[0]}/metrics/metrics.json"}
