"""Workspace and upload services against SQLite and PostgreSQL (the `database_url` fixture runs both)."""
import io
import threading

import pytest
from sqlalchemy import func, select

from kaos_backend.errors import (BadRequest, BlobNotFound, CpuRequestError, InvalidBundle, InvalidHyperparams,
                                 InvalidManifest, InvalidWorkspaceName, WorkspaceExists, WorkspaceNotFound)
from kaos_backend.models import Blob, Bundle, Workspace
from kaos_backend.services.uploads import UploadBody, body_from_bytes
from tests.backend.helpers import features_zip, source_zip, zip_bytes

MANIFEST = b'{"url": "https://example.com/a.csv", "path": "training/a.csv"}\n'
PARAMS = b'{"degree": [3, 5], "kernel": ["linear", "poly"], "gamma": [10, 0.1, 0.01]}'


def count(services, model):
    with services.db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(model))


def assert_no_leftovers(services):
    assert list(services.store.digests()) == []
    assert not any(services.store.temp_dir.iterdir())
    assert count(services, Blob) == 0 and count(services, Bundle) == 0


def test_create_list_info(services):
    info = services.workspaces.create("mnist", user="jo.doe")
    assert info.name == "mnist"
    assert info.pipelines == ["build-train-mnist", "build-serve-mnist", "build-notebook-mnist"]
    assert info.repos == ["source-train-mnist", "build-train-mnist", "ingestion-mnist", "train-mnist", "hyper-mnist",
                          "data-manifest-mnist", "source-serve-mnist", "source-notebook-mnist",
                          "build-notebook-mnist", "data-notebook-mnist"]
    services.workspaces.create("alpha")
    assert services.workspaces.names() == ["alpha", "mnist"]
    with services.db.session_scope() as session:
        assert session.scalar(select(Workspace.user).where(Workspace.name == "mnist")) == "jodoe"


def test_invalid_names(services):
    for name in ("", None, "Upper", "under_score", "-dash", "dash-", "a" * 41, "dot.s", "ü"):
        with pytest.raises(InvalidWorkspaceName):
            services.workspaces.create(name)
    assert services.workspaces.names() == []


def test_exists(services):
    services.workspaces.create("mnist")
    with pytest.raises(WorkspaceExists, match="^Workspace mnist already exists$"):
        services.workspaces.create("mnist")


def test_not_found(services):
    for call in (services.workspaces.info, services.workspaces.delete):
        with pytest.raises(WorkspaceNotFound, match="^Workspace nope not found$"):
            call("nope")


def test_delete_is_exact(services):
    for name in ("a", "ab", "train", "ba"):
        services.workspaces.create(name)
    services.workspaces.delete("a")
    assert services.workspaces.names() == ["ab", "ba", "train"]
    services.workspaces.delete("train")
    assert services.workspaces.names() == ["ab", "ba"]


def test_delete_keeps_shared_blobs_and_removes_orphans(services):
    for name in ("a", "ab"):
        services.workspaces.create(name)
        services.uploads.features(name, body_from_bytes(features_zip()))
    services.uploads.manifest("a", body_from_bytes(MANIFEST))
    assert count(services, Blob) == 2 and len(list(services.store.digests())) == 2
    services.workspaces.delete("a")
    assert count(services, Bundle) == 1
    assert count(services, Blob) == 1 and len(list(services.store.digests())) == 1
    services.workspaces.delete("ab")
    assert_no_leftovers(services)


def test_delete_all(services):
    for name in ("a", "b"):
        services.workspaces.create(name)
        services.uploads.features(name, body_from_bytes(features_zip(root=name)))
    services.workspaces.delete_all()
    assert services.workspaces.names() == []
    assert count(services, Workspace) == 0
    assert_no_leftovers(services)


def test_features_upload(services):
    services.workspaces.create("ws")
    result = services.uploads.features("ws", body_from_bytes(features_zip()), user="me", cpu="1", memory="1Gi")
    blob = services.store.put_stream(io.BytesIO(features_zip()))
    assert result == {"glob_name": f"features:{blob.hash5}"}
    with services.db.session_scope() as session:
        bundle = session.scalar(select(Bundle))
        assert (bundle.kind, bundle.root_name, bundle.user, bundle.blob_digest) == ("features", "features", "me",
                                                                                    blob.digest)
        assert bundle.meta["resources"] == {"cpu": 1.0, "memory": "1Gi", "gpu": None}
    assert "train-ws" in services.workspaces.info("ws").pipelines


def test_duplicate_upload_is_one_row_and_one_blob(services):
    services.workspaces.create("ws")
    first = services.uploads.features("ws", body_from_bytes(features_zip()), memory="1Gi")
    second = services.uploads.features("ws", body_from_bytes(features_zip()), memory="2Gi")
    assert first == second
    assert count(services, Bundle) == 1 and count(services, Blob) == 1
    assert len(list(services.store.digests())) == 1
    with services.db.session_scope() as session:
        assert session.scalar(select(Bundle)).meta["resources"]["memory"] == "2Gi"  # the latest request's


def test_manifest_upload(services):
    import hashlib
    services.workspaces.create("ws")
    result = services.uploads.manifest("ws", body_from_bytes(MANIFEST))
    assert result == {"glob_name": f"manifest:{hashlib.sha256(MANIFEST).hexdigest()[:5]}"}


def test_params_upload(services):
    services.workspaces.create("ws")
    result = services.uploads.params("ws", body_from_bytes(PARAMS), parallelism="3")
    assert len(result["params"]) == 12 and list(result["params"][0]) == ["degree", "kernel", "gamma"]
    assert len(result["glob_name"]) == 5
    with services.db.session_scope() as session:
        bundle = session.scalar(select(Bundle))
        assert bundle.meta["parallelism"] == 3 and bundle.meta["grid"] == result["params"]
        assert list(bundle.meta["params"]) == ["degree", "kernel", "gamma"]  # key order survives the database
    assert services.uploads.params("ws", body_from_bytes(b"{}")) == {"glob_name": "params.null", "params": []}
    assert services.uploads.params("ws", body_from_bytes(b"{ }")) == {"glob_name": "params.null", "params": []}
    assert count(services, Bundle) == 2 and count(services, Blob) == 2
    assert len(list(services.store.digests())) == 2  # the second "{ }" blob was not kept


def test_notebook_data_and_source_uploads(services):
    services.workspaces.create("ws")
    assert services.uploads.notebook_data("ws", body_from_bytes(features_zip("mydata"))) is None
    bundle = services.uploads.source("source-train", "ws", body_from_bytes(source_zip()), user="u", gpu="0")
    assert bundle.glob_name.startswith("mnist:") and bundle.kind == "source-train"
    with pytest.raises(InvalidBundle, match="Missing file serve"):
        services.uploads.source("source-serve", "ws", body_from_bytes(source_zip()))


@pytest.mark.parametrize("call, data, error", [
    ("features", b"not a zip", InvalidBundle),
    ("features", zip_bytes({"a/x": "1", "b/y": "2"}), InvalidBundle),
    ("features", zip_bytes({"../evil": "1"}), InvalidBundle),
    ("notebook_data", b"", InvalidBundle),
    ("manifest", b'{"url": "ftp://x/y", "path": "a"}', InvalidManifest),
    ("params", b'{"lr": 0.1}', InvalidHyperparams),
])
def test_failed_validation_leaves_nothing(services, call, data, error):
    services.workspaces.create("ws")
    with pytest.raises(error):
        getattr(services.uploads, call)("ws", body_from_bytes(data))
    assert_no_leftovers(services)


def test_unknown_workspace_reads_nothing(services):
    stream = io.BytesIO(features_zip())
    with pytest.raises(WorkspaceNotFound):
        services.uploads.features("nope", UploadBody(stream=stream))
    assert stream.tell() == 0
    assert_no_leftovers(services)


def test_resources_are_checked_before_reading(make_services):
    services = make_services(max_cpu=2)
    services.workspaces.create("ws")
    stream = io.BytesIO(features_zip())
    with pytest.raises(CpuRequestError):
        services.uploads.features("ws", UploadBody(stream=stream), cpu="4")
    assert stream.tell() == 0


def test_upload_by_digest(services):
    services.workspaces.create("ws")
    services.workspaces.create("other")
    first = services.uploads.features("ws", body_from_bytes(features_zip()))
    digest = next(services.store.digests())
    assert services.blobs.info(digest) == {"digest": digest, "size": len(features_zip())}
    assert services.uploads.features("other", UploadBody(digest=digest)) == first
    assert count(services, Bundle) == 2 and count(services, Blob) == 1
    with pytest.raises(BlobNotFound):
        services.uploads.features("ws", UploadBody(digest="0" * 64))
    with pytest.raises(BlobNotFound):
        services.blobs.info("0" * 64)
    with pytest.raises(BadRequest, match="Invalid digest"):
        services.uploads.features("ws", UploadBody(digest="../x"))
    with pytest.raises(BadRequest, match="not " + "1" * 64):
        services.uploads.features("ws", UploadBody(stream=io.BytesIO(features_zip("x")), digest="1" * 64))
    with pytest.raises(BadRequest, match="Nothing uploaded"):
        services.uploads.features("ws", UploadBody())


def test_a_blob_stored_for_a_valid_kind_is_not_deleted_by_an_invalid_use(services):
    services.workspaces.create("ws")
    services.uploads.features("ws", body_from_bytes(features_zip()))
    digest = next(services.store.digests())
    with pytest.raises(InvalidHyperparams):
        services.uploads.params("ws", UploadBody(digest=digest))
    with pytest.raises(InvalidHyperparams):
        services.uploads.params("ws", body_from_bytes(features_zip()))
    assert list(services.store.digests()) == [digest] and count(services, Blob) == 1


def _race(workers, action):
    """Run `action(index)` in one thread per worker at the same moment; return results or exceptions."""
    barrier = threading.Barrier(len(workers))
    results = [None] * len(workers)

    def run(index):
        barrier.wait()
        try:
            results[index] = action(index)
        except Exception as error:  # noqa: BLE001 - the test inspects every outcome
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_creates_of_one_name(make_services):
    workers = [make_services() for _ in range(2)] * 4  # two "processes", four threads each
    results = _race(workers, lambda index: workers[index].workspaces.create("race"))
    assert sum(1 for result in results if not isinstance(result, Exception)) == 1, results
    assert all(isinstance(result, WorkspaceExists) for result in results if isinstance(result, Exception)), results
    assert workers[0].workspaces.names() == ["race"]


def test_concurrent_identical_uploads(make_services):
    workers = [make_services() for _ in range(2)] * 3
    workers[0].workspaces.create("ws")
    results = _race(workers, lambda index: workers[index].uploads.features("ws", body_from_bytes(features_zip())))
    assert all(result == results[0] for result in results), results
    assert count(workers[0], Bundle) == 1 and count(workers[0], Blob) == 1
    assert len(list(workers[0].store.digests())) == 1


def test_sqlite_pragmas(tmp_path):
    from kaos_backend.db import Database
    database = Database(f"sqlite:///{tmp_path / 'kaos.db'}")
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    database.dispose()


def test_deleting_a_workspace_never_takes_a_blob_another_upload_is_recording(make_services):
    workers = [make_services(), make_services()]
    data = features_zip()
    for round_ in range(5):
        old, new = f"old{round_}", f"new{round_}"
        workers[0].workspaces.create(old)
        workers[0].workspaces.create(new)
        workers[0].uploads.features(old, body_from_bytes(data))
        actions = [lambda: workers[0].workspaces.delete(old),
                   lambda: workers[1].uploads.features(new, body_from_bytes(data))]
        results = _race(actions, lambda index: actions[index]())
        assert not any(isinstance(result, Exception) for result in results), results
        with workers[0].db.session_scope() as session:
            digest = session.scalar(select(Bundle.blob_digest).join(Workspace).where(Workspace.name == new))
        assert workers[0].store.exists(digest) and workers[0].blobs.info(digest)["size"] == len(data)
        workers[0].workspaces.delete(new)
    assert_no_leftovers(workers[0])


def test_odd_but_valid_inputs_are_stored(services):
    services.workspaces.create("w" * 40, user="u" * 500)
    ws = "w" * 40
    assert services.uploads.features(ws, body_from_bytes(features_zip("ünïcode dir " + "r" * 200)),
                                     user="x" * 1000)["glob_name"].startswith("ünïcode dir ")
    params = '{"big": [123456789012345678901234567890], "text": ["\\u0000", "ü"], "k=v/x": [true]}'.encode()
    result = services.uploads.params(ws, body_from_bytes(params))
    assert result["params"] == [{"big": 123456789012345678901234567890, "text": "\0", "k=v/x": True},
                                {"big": 123456789012345678901234567890, "text": "ü", "k=v/x": True}]
    with services.db.session_scope() as session:
        stored = session.scalar(select(Bundle).where(Bundle.kind == "params"))
        assert stored.meta["grid"] == result["params"]
