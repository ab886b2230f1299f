"""Killing a workspace on a real backend (its scheduler builds virtualenvs, extracts bundles, ingests manifests
and trains): the files that only that workspace used go with it, the ones another workspace uses stay."""
import functools
import hashlib
import http.server
import json
import os
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest
import requests
from kaos_model.ids import new_job_id

from sqlalchemy import select

from kaos_backend.control.builds import BuildController
from kaos_backend.control.common import reattached
from kaos_backend.control.trainings import TrainController
from kaos_backend.errors import PlatformUnhealthy
from kaos_backend.executors.venv_builder import COMPLETE_MARKER, requirements_key
from kaos_backend.layout import exclusive_lock
from kaos_backend.models import Endpoint, Job, Partition, Workspace
from kaos_backend.services.uploads import body_from_bytes
from kaos_cli.bundles import zip_directory
from tests.backend.helpers import features_zip, zip_bytes
from tests.support.platform import tiny_data_bundle, tiny_train_bundle, wait_for

TERMINAL = ("JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED")
TRAIN = "import os, sys\nos.makedirs(os.path.join(sys.argv[1], 'model'))\nprint('trained %s')\n"
SHARED_REQUIREMENTS = ""           # both workspaces' first sources: one environment for both
OWN_REQUIREMENTS = "# only a\n"     # workspace a's second source: an environment only a uses


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def file_server(tmp_path):
    """The base URL of a directory with a few files, served on 127.0.0.1 (what the manifests point at)."""
    root = tmp_path / "served"
    (root / "training").mkdir(parents=True)
    (root / "training" / "a.csv").write_text("1,0,0\n")
    (root / "training" / "b.csv").write_text("2,0,0\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def api(server, method, path, **kwargs) -> requests.Response:
    response = requests.request(method, server.url + path, headers={"X-Token": server.token}, timeout=60, **kwargs)
    assert response.status_code < 400, (method, path, response.status_code, response.text)
    return response


def zipped(directory: Path) -> bytes:
    return zip_directory(directory, directory.with_suffix(".zip"), progress=False).read_bytes()


def manifest(base_url: str, *names: str) -> bytes:
    return "".join(json.dumps({"url": f"{base_url}/training/{name}", "path": f"training/{name}"}) + "\n"
                   for name in names).encode()


def jobs_of(server, workspace: str) -> Dict[str, List[dict]]:
    return api(server, "GET", f"train/{workspace}").json()["response"]


def settle(server, workspace: str, trainings: int) -> List[str]:
    """Wait until the workspace ran `trainings` trainings and every job of it ended; all its job ids."""
    def settled():
        jobs = jobs_of(server, workspace)
        every = [job for kind in ("training", "building", "ingesting") for job in jobs[kind]]
        if len(jobs["training"]) == trainings and all(job["state"] in TERMINAL for job in every):
            return every
        return None
    every = wait_for(settled, timeout=300, what=f"the jobs of {workspace} to end")
    assert all(job["state"] == "JOB_SUCCESS" for job in every), every
    return sorted(job["job_id"] for job in every)


def upload(server, route: str, data: bytes) -> dict:
    return api(server, "POST", route, data=data).json()


def listing(directory: Path) -> List[str]:
    return sorted(entry.name for entry in directory.iterdir()) if directory.is_dir() else []


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_kill_removes_what_only_that_workspace_used(backend, tmp_path, file_server):
    data_dir = backend.data_dir
    shared_data = zipped(tiny_data_bundle(tmp_path / "shared-data"))
    source = {name: zipped(tiny_train_bundle(tmp_path / f"source-{name}", TRAIN % name, SHARED_REQUIREMENTS))
              for name in ("a", "b")}
    own_source = zipped(tiny_train_bundle(tmp_path / "source-a2", TRAIN % "a2", OWN_REQUIREMENTS))
    shared_manifest = manifest(file_server, "a.csv")
    own_manifest = manifest(file_server, "a.csv", "b.csv")
    shared_env = requirements_key([SHARED_REQUIREMENTS.encode()])
    own_env = requirements_key([OWN_REQUIREMENTS.encode()])
    assert shared_env != own_env

    for name in ("a", "b"):
        api(backend, "POST", f"workspace/{name}")
        upload(backend, f"data/{name}/features", shared_data)
        upload(backend, f"train/{name}", source[name])
    settle(backend, "b", trainings=1)
    upload(backend, "data/b/manifest", shared_manifest)
    b_jobs = settle(backend, "b", trainings=2)
    settle(backend, "a", trainings=1)
    upload(backend, "train/a", own_source)
    settle(backend, "a", trainings=2)
    upload(backend, "data/a/manifest", shared_manifest)
    settle(backend, "a", trainings=3)
    upload(backend, "data/a/manifest", own_manifest)
    a_jobs = settle(backend, "a", trainings=4)

    extracted = sorted([sha256(shared_data), sha256(source["a"]), sha256(source["b"]), sha256(own_source)])
    assert listing(data_dir / "extracted") == sorted(extracted + [digest + ".lock" for digest in extracted])
    assert listing(data_dir / "ingested") == sorted([sha256(shared_manifest), sha256(own_manifest)])
    assert listing(data_dir / "envs") == sorted([shared_env, shared_env + ".lock", own_env, own_env + ".lock"])
    assert listing(data_dir / "jobs") == sorted(a_jobs + b_jobs)
    assert len(list((data_dir / "blobs").glob("??/*"))) == 6

    api(backend, "DELETE", "workspace/a")
    kept = sorted([sha256(shared_data), sha256(source["b"])])
    assert listing(data_dir / "extracted") == sorted(kept + [digest + ".lock" for digest in kept])
    assert listing(data_dir / "ingested") == [sha256(shared_manifest)]
    assert listing(data_dir / "envs") == sorted([shared_env, shared_env + ".lock"])
    assert listing(data_dir / "jobs") == b_jobs
    blobs = sorted([sha256(shared_data), sha256(source["b"]), sha256(shared_manifest)])
    assert sorted(path.name for path in (data_dir / "blobs").glob("??/*")) == blobs
    assert listing(data_dir / "trash") == [".lock"]
    # what stays still works: the remaining workspace trains again on the kept data, code and environment
    upload(backend, "data/b/features", shared_data)
    upload(backend, "data/b/params", b'{"epochs": [1, 2]}')
    settle(backend, "b", trainings=3)

    api(backend, "DELETE", "workspace/b")
    for name in ("extracted", "ingested", "envs", "jobs"):
        assert listing(data_dir / name) == [], name
    assert listing(data_dir / "blobs") == [".lock", ".tmp"] and listing(data_dir / "blobs" / ".tmp") == []
    assert listing(data_dir / "trash") == [".lock"]
    assert "Traceback" not in backend.log()


def test_internal_resources_removes_every_file_made_from_the_uploads(backend, tmp_path, file_server):
    data_dir = backend.data_dir
    for name, requirements in (("one", SHARED_REQUIREMENTS), ("two", OWN_REQUIREMENTS)):
        api(backend, "POST", f"workspace/{name}")
        upload(backend, f"data/{name}/manifest", manifest(file_server, f"{'a' if name == 'one' else 'b'}.csv"))
        upload(backend, f"train/{name}", zipped(tiny_train_bundle(tmp_path / name, TRAIN % name, requirements)))
    for name in ("one", "two"):
        settle(backend, name, trainings=1)
    for name in ("extracted", "ingested", "envs", "jobs"):
        assert listing(data_dir / name), name

    api(backend, "DELETE", "internal/resources")
    assert api(backend, "GET", "workspace").json() == {"names": []}
    for name in ("extracted", "ingested", "envs", "jobs"):
        assert listing(data_dir / name) == [], name
    assert list((data_dir / "blobs").glob("??")) == []
    assert listing(data_dir / "trash") == [".lock"]


# -- the rules, against the services over SQLite and PostgreSQL (the scheduler's part played by the test) ----------


def built_env(services, key: str) -> str:
    """A finished local image `envs/<key>/` with its lock file, as venv_builder leaves one; its image reference."""
    env = services.layout.envs_dir / key
    (env / "bin").mkdir(parents=True)
    (env / COMPLETE_MARKER).write_text(key)
    (services.layout.envs_dir / f"{key}.lock").touch()
    return str(env)


def record_image(services, workspace: str, image: str, endpoint: bool = False) -> None:
    with services.db.session_scope() as session:
        workspace_id = session.query(Workspace.id).filter(Workspace.name == workspace).scalar()
        if endpoint:
            session.add(Endpoint(name=f"serve-{workspace}-{new_job_id()[:6]}", workspace_id=workspace_id, user="u",
                                 state="PIPELINE_RUNNING", image=image))
        else:
            session.add(Job(id=new_job_id(), workspace_id=workspace_id, kind="build-train", state="JOB_SUCCESS",
                            user="u", image=image))


def test_an_environment_goes_once_no_job_or_endpoint_uses_it_and_never_while_it_is_built(services):
    for name in ("a", "b"):
        services.workspaces.create(name)
    shared, own, busy = (built_env(services, key) for key in ("1" * 16, "2" * 16, "3" * 16))
    for image in (shared, own, busy):
        record_image(services, "a", image)
    record_image(services, "b", shared, endpoint=True)
    record_image(services, "b", "registry.example.org/kaos/not-local:1")  # not a local image: ignored

    with exclusive_lock(services.layout.envs_dir / f"{'3' * 16}.lock"):  # venv_builder is building it
        services.workspaces.delete("a")
    assert listing(services.layout.envs_dir) == sorted(["1" * 16, "1" * 16 + ".lock", "3" * 16, "3" * 16 + ".lock"])

    services.workspaces.delete("b")
    assert listing(services.layout.envs_dir) == sorted(["3" * 16, "3" * 16 + ".lock"])
    assert listing(services.layout.trash_dir) == [".lock"]


def test_a_bundle_being_extracted_is_left_in_place(services):
    services.workspaces.create("a")
    services.uploads.features("a", body_from_bytes(features_zip()))
    digest = sha256(features_zip())
    extracted = services.layout.extracted(services.store.path(digest), digest)
    with exclusive_lock(services.layout.extracted_dir / f"{digest}.lock"):  # the scheduler extracts it again
        services.workspaces.delete("a")
    assert extracted.is_dir() and not services.store.exists(digest)

    services.workspaces.create("b")
    services.uploads.features("b", body_from_bytes(features_zip()))
    services.workspaces.delete("b")
    assert listing(services.layout.extracted_dir) == []


def test_a_waiter_on_a_removed_lock_file_locks_the_file_made_after_it(tmp_path):
    path = tmp_path / "bundle.lock"
    waiting, done = threading.Event(), threading.Event()
    held_inode = []

    def waiter():
        waiting.set()
        with exclusive_lock(path) as lock:
            held_inode.append(os.fstat(lock.fd).st_ino)
            with exclusive_lock(path, wait=False) as other:
                assert other is None  # it is a real lock on the file at `path`
            done.wait(10)

    def blocked_on(inode: int) -> bool:  # /proc/locks shows a waiter as "N: -> FLOCK ... <pid> <dev>:<inode> ..."
        lines = Path("/proc/locks").read_text().splitlines()
        waiters = [line.split() for line in lines if " -> " in line]
        return any(fields[5] == str(os.getpid()) and fields[6].endswith(f":{inode}") for fields in waiters)

    with exclusive_lock(path) as first:
        thread = threading.Thread(target=waiter)
        thread.start()
        waiting.wait(10)
        wait_for(lambda: blocked_on(path.stat().st_ino), timeout=10, what="the waiter to wait on the lock file")
        first.remove()
    wait_for(lambda: held_inode, timeout=10, what="the waiter to lock")
    assert held_inode == [path.stat().st_ino]
    with exclusive_lock(path, wait=False) as third:
        assert third is None
    done.set()
    thread.join(10)


# -- the API records desired="kill", the scheduler stops (the scheduler's part played by the test's ticks) ---------

SLEEPER = "#!/usr/bin/env python3\nimport time\nprint('training', flush=True)\ntime.sleep(600)\n"


def _tick_until(controllers, done, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the controllers did not get there"
        for controller in controllers:
            controller.tick()
        time.sleep(0.05)


def _running_partition(services):
    with services.db.read_scope() as session:
        return session.scalar(select(Partition).where(Partition.state == "JOB_RUNNING"))


def test_a_workspace_kill_only_records_desired_kill_and_the_scheduler_stops_its_workloads(services, monkeypatch):
    """Without a scheduler the request stops nothing itself: after its wait it answers PLATFORM_UNHEALTHY and
    leaves the workspace, its rows and its running training as they were, the kill recorded. With a scheduler
    going round (woken by the request), the training is stopped by the scheduler and the workspace goes."""
    services.workspaces.create("ws")
    entries = {"tiny/Dockerfile": "FROM python:3.11-slim\n", "tiny/model/__init__.py": "",
               "tiny/model/requirements.txt": "", "tiny/model/train": SLEEPER}
    build_id = services.train.submit_source("ws", body_from_bytes(zip_bytes(entries)))["job_id"]
    services.train.submit_features("ws", body_from_bytes(features_zip()))
    builds, trainings = BuildController(services), TrainController(services)
    _tick_until([builds, trainings], lambda: _running_partition(services) is not None)
    partition = _running_partition(services)
    workload = reattached(services.config, partition.executor_state)
    assert workload.poll() is None

    services.workspaces.stop_wait = 0.5
    with pytest.raises(PlatformUnhealthy) as refused:
        services.workspaces.delete("ws")
    assert refused.value.part == "scheduler" and f"partition {partition.job_id}#0" in refused.value.message
    assert workload.poll() is None, "the API stopped the workload itself"
    assert services.workspaces.names() == ["ws"]
    with services.db.read_scope() as session:
        assert session.get(Job, partition.job_id).desired == "kill"
        assert session.get(Job, build_id) is not None

    services.workspaces.stop_wait = 60
    stop = threading.Event()

    def scheduler():
        while not stop.is_set():
            trainings.tick()
            time.sleep(0.05)
    thread = threading.Thread(target=scheduler)
    thread.start()
    try:
        services.workspaces.delete("ws")
    finally:
        stop.set()
        thread.join(30)
    assert services.workspaces.names() == []
    assert workload.poll() is not None  # stopped (its exit record went with the job's directory)


def test_a_training_is_never_scheduled_into_a_workspace_a_kill_is_deleting(services, monkeypatch, caplog):
    """The scheduler racing a workspace kill: the kill has deleted the workspace's rows (its one training among them)
    and not yet committed when the train controller schedules. The controller waits for the kill and schedules
    nothing, without an error (on PostgreSQL it used to insert a job for the deleted workspace: a foreign key
    violation that ended the controller's tick); the kill goes through."""
    services.workspaces.create("ws")
    entries = {"tiny/Dockerfile": "FROM python:3.11-slim\n", "tiny/model/__init__.py": "",
               "tiny/model/requirements.txt": "", "tiny/model/train": TRAIN}
    build_id = services.train.submit_source("ws", body_from_bytes(zip_bytes(entries)))["job_id"]
    builds, trainings = BuildController(services), TrainController(services)

    def built():
        with services.db.read_scope() as session:
            state = session.get(Job, build_id).state
        assert state in ("JOB_STARTING", "JOB_RUNNING", "JOB_SUCCESS"), f"the build ended {state}"
        return state == "JOB_SUCCESS"
    _tick_until([builds], built)
    services.train.submit_features("ws", body_from_bytes(features_zip()))  # the pipeline is now ready to train

    import kaos_backend.services.workspaces as workspaces_module
    deleting, commit = threading.Event(), threading.Event()
    delete_rows = workspaces_module.delete_unreferenced_rows

    def held_before_commit(session, digests):
        orphans = delete_rows(session, digests)
        deleting.set()
        assert commit.wait(60)
        return orphans
    monkeypatch.setattr(workspaces_module, "delete_unreferenced_rows", held_before_commit)
    errors: List[BaseException] = []

    def run(call):
        try:
            call()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
    kill = threading.Thread(target=run, args=(lambda: services.workspaces.delete("ws"),))
    schedule = threading.Thread(target=run, args=(trainings.schedule,))
    kill.start()
    assert deleting.wait(60), "the kill did not get to its rows"
    schedule.start()
    schedule.join(1)  # on PostgreSQL it now waits for the kill's transaction
    commit.set()
    kill.join(60)
    schedule.join(60)
    assert not kill.is_alive() and not schedule.is_alive()
    assert errors == []
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == []
    assert services.workspaces.names() == []
    with services.db.read_scope() as session:
        assert session.scalars(select(Job)).all() == []
