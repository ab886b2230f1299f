"""Re-deploys that send nothing take no time (issue 8, item 7): the CLI against a real backend skips compressing a
folder whose files did not change since its last zip, and zips and uploads whenever that is not proven."""
import json
import os
import re
import time

import pytest

pytest.importorskip("kaos_backend.app")

from kaos_cli import bundle_cache, bundles  # noqa: E402
from kaos_cli.bundle_cache import CACHE_NAME, RACY_SECONDS, folder_key  # noqa: E402
from tests.support.backend import BackendProcess  # noqa: E402
from tests.support.cli import kaos as run_kaos  # noqa: E402
from tests.support.counting_proxy import CountingProxy  # noqa: E402
from tests.support.platform import tiny_train_bundle  # noqa: E402

GLOB_RE = re.compile(r"Setting (data|source) bundle: /(\S+)")


@pytest.fixture
def zips(monkeypatch):
    """The folders `kaos_cli.bundles.zip_directory` was entered for, in order (it still zips)."""
    entered = []
    original = bundles.zip_directory

    def spy(src_dir, *args, **kwargs):
        entered.append(os.path.basename(os.path.normpath(src_dir)))
        return original(src_dir, *args, **kwargs)

    monkeypatch.setattr(bundles, "zip_directory", spy)
    return entered


@pytest.fixture
def aged(monkeypatch):
    """Files count as old as soon as they are written (the racy window has its own test below)."""
    monkeypatch.setattr(bundle_cache, "RACY_SECONDS", 0.0)


@pytest.fixture
def on_backend(backend, kaos):
    assert kaos("init", "-e", backend.url, "-t", backend.token).exit_code == 0
    assert kaos("workspace", "create", "-n", "redeploy").exit_code == 0
    return backend


def _data(project, name="data", size=64 * 1024):
    training = project / name / "features" / "training"
    training.mkdir(parents=True)
    (training / "rows.bin").write_bytes(os.urandom(size))
    (training / "labels.csv").write_text("0,1\n")
    return project / name


def _deploy(kaos, *args):
    result = kaos("train", "deploy", *args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return dict((kind, glob) for kind, glob in GLOB_RE.findall(result.output))


def _cached_digest(project, folder):
    folders = json.loads((project / ".kaos" / CACHE_NAME).read_text())["folders"]
    return folders[folder_key(folder)]["digest"]


def _data_glob(backend, workspace="redeploy"):
    return backend.get(f"train/{workspace}/inspect").json()["data_glob"]


def _stored(backend, digest):
    return backend.get(f"blobs/{digest}").status_code == 200


def test_an_unchanged_redeploy_does_not_zip(on_backend, kaos, project, zips, aged, monkeypatch):
    data = _data(project)
    source = tiny_train_bundle(project / "source", "print('train')\n")
    first = _deploy(kaos, "-s", "source", "-d", "data")
    assert zips == ["source", "data"]
    assert set(first) == {"source", "data"}

    def refuse(*args, **kwargs):
        raise AssertionError("an unchanged folder was zipped")

    monkeypatch.setattr(bundles, "zip_directory", refuse)
    temporary = []
    monkeypatch.setattr(bundles.TemporaryBundle, "__enter__", lambda self: temporary.append(self) or refuse())
    again = _deploy(kaos, "-s", "source", "-d", "data")
    assert again == first and temporary == []
    assert _data_glob(on_backend) == "/" + first["data"]
    assert _stored(on_backend, _cached_digest(project, data)) and _stored(on_backend, _cached_digest(project, source))


def _same_size_edit_with_mtime_put_back(data):
    path = data / "features" / "training" / "labels.csv"
    before = path.stat()
    path.write_text("1,0\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


CHANGES = {
    "content": _same_size_edit_with_mtime_put_back,
    "size": lambda data: (data / "features" / "training" / "labels.csv").write_text("0,1,2\n"),
    "mode": lambda data: (data / "features" / "training" / "labels.csv").chmod(0o600),
    "new file": lambda data: (data / "features" / "training" / "more.csv").write_text("2,3\n"),
    "removed file": lambda data: (data / "features" / "training" / "labels.csv").unlink(),
    "renamed file": lambda data: (data / "features" / "training" / "labels.csv").rename(
        data / "features" / "training" / "labels-v2.csv"),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_a_changed_folder_is_zipped_and_its_new_bytes_uploaded(on_backend, kaos, project, zips, aged, change):
    data = _data(project)
    first = _deploy(kaos, "-d", "data")["data"]
    old_digest = _cached_digest(project, data)
    change(data)
    second = _deploy(kaos, "-d", "data")["data"]
    assert zips == ["data", "data"]
    new_digest = _cached_digest(project, data)
    assert second != first and new_digest != old_digest
    assert _data_glob(on_backend) == "/" + second and _stored(on_backend, new_digest)
    assert _deploy(kaos, "-d", "data")["data"] == second and zips == ["data", "data"]  # the new state is cached


def test_a_backend_that_lost_the_blob_to_a_workspace_kill_gets_the_upload_again(on_backend, kaos, project, zips,
                                                                               aged):
    data = _data(project)
    first = _deploy(kaos, "-d", "data")["data"]
    digest = _cached_digest(project, data)
    assert kaos("workspace", "kill", "-y").exit_code == 0
    assert not _stored(on_backend, digest)  # the only bundle that held it is gone, and so are its bytes
    assert kaos("workspace", "create", "-n", "redeploy").exit_code == 0
    assert _deploy(kaos, "-d", "data")["data"] == first
    assert zips == ["data", "data"]
    assert _stored(on_backend, digest) and _data_glob(on_backend) == "/" + first


def test_another_backend_gets_the_upload_again(on_backend, kaos, project, zips, aged, tmp_path):
    data = _data(project)
    first = _deploy(kaos, "-d", "data")["data"]
    other = BackendProcess(tmp_path / "other-backend-data").start()
    try:
        assert kaos("init", "-f", "-e", other.url, "-t", other.token).exit_code == 0
        assert kaos("workspace", "create", "-n", "redeploy").exit_code == 0
        assert _deploy(kaos, "-d", "data")["data"] == first
        assert zips == ["data", "data"]
        assert _stored(other, _cached_digest(project, data)) and _data_glob(other) == "/" + first
    finally:
        other.stop()


def test_racy_files_are_zipped_until_they_are_old_enough(on_backend, kaos, project, zips, monkeypatch):
    data = _data(project)
    monkeypatch.setattr(bundle_cache, "RACY_SECONDS", 3600.0)  # every file here was written within the window
    first = _deploy(kaos, "-d", "data")["data"]
    assert _deploy(kaos, "-d", "data")["data"] == first
    assert zips == ["data", "data"]
    folders = json.loads((project / ".kaos" / CACHE_NAME).read_text())["folders"]
    assert folders[folder_key(data)]["trusted"] is False
    monkeypatch.setattr(bundle_cache, "RACY_SECONDS", 0.0)  # now they are old: zipped once more, then trusted
    _deploy(kaos, "-d", "data")
    _deploy(kaos, "-d", "data")
    assert zips == ["data", "data", "data"]


# -- the real `kaos` console script: bytes on the wire, a corrupt cache ----------------------------------------
@pytest.fixture
def proxied(backend, tmp_path):
    """A project initialised against the backend through a byte-counting proxy, workspace `redeploy` current."""
    proxy = CountingProxy(backend.port).start()
    project = tmp_path / "cli-project"
    project.mkdir()
    assert run_kaos(project, "init", "-e", proxy.url, "-t", backend.token).code == 0
    assert run_kaos(project, "workspace", "create", "-n", "redeploy").code == 0
    yield project, proxy
    proxy.stop()


def _wait_until_aged(*folders):
    """Sleep until every file is older than the racy window, as in a folder that was not just written."""
    newest = max(max(os.stat(path).st_mtime, os.stat(path).st_ctime)
                 for folder in folders for path in folder.rglob("*"))
    time.sleep(max(0.0, newest + RACY_SECONDS + 0.5 - time.time()))


def test_an_unchanged_redeploy_sends_almost_nothing(backend, proxied):
    project, proxy = proxied
    size = 4 * 1024 * 1024
    _wait_until_aged(_data(project, size=size))
    proxy.reset()
    first = run_kaos(project, "train", "deploy", "-d", "data", tty=True)  # a terminal: the bars are drawn
    assert first.code == 0 and "Compressing data bundle" in first.err, first
    assert proxy.sent > size
    proxy.reset()
    again = run_kaos(project, "train", "deploy", "-d", "data", tty=True)
    assert again.code == 0 and "Compressing" not in again.err and "Uploading" not in again.err, again
    assert proxy.sent < 64 * 1024, proxy.sent
    assert GLOB_RE.findall(again.out) == GLOB_RE.findall(first.out)
    assert _data_glob(backend) == "/" + GLOB_RE.findall(first.out)[0][1]


@pytest.mark.parametrize("content, problem", [
    (b"\x00garbage{", "not valid JSON"),
    (b'{"version": 1, "folders": {"/x": 3}}', "not a version 1 bundle cache"),
], ids=["garbage", "wrong shape"])
def test_a_corrupt_cache_costs_one_warning_and_never_a_traceback(backend, proxied, content, problem):
    project, _ = proxied
    _data(project)
    tiny_train_bundle(project / "source", "print('train')\n")
    first = run_kaos(project, "train", "deploy", "-s", "source", "-d", "data")
    assert first.code == 0, first
    cache = project / ".kaos" / CACHE_NAME
    cache.write_bytes(content)
    again = run_kaos(project, "train", "deploy", "-s", "source", "-d", "data")
    assert again.code == 0 and "Traceback" not in again.text, again
    warnings = [line for line in again.text.splitlines() if line.startswith("Warning - ")]
    assert warnings == [f"Warning - Ignoring the bundle cache .kaos/{CACHE_NAME} ({problem}): every bundle is "
                        "compressed once more and the cache rewritten"], again
    assert GLOB_RE.findall(again.out) == GLOB_RE.findall(first.out)
    assert len(json.loads(cache.read_text())["folders"]) == 2  # rewritten whole


# -- serve deploy, against the scripted server: the same skip, and a digest the backend does not have -------------
def test_serve_deploy_sends_an_unchanged_folder_by_digest_without_zipping(ws, kaos, project, zips, aged):
    serve = project / "serve"
    (serve / "mnist" / "model").mkdir(parents=True)
    (serve / "mnist" / "Dockerfile").write_text("FROM python:3.11\n")
    (serve / "mnist" / "model" / "serve").write_text("#!/usr/bin/env python\n")
    (serve / "mnist" / "model" / "web-requirements.txt").write_text("flask\n")
    ws.route("POST", "inference/mnist/None", body={"glob_name": "mnist:e39c0", "endpoint": "serve-mnist-53d3da"})

    assert kaos("serve", "deploy", "-s", "serve").exit_code == 0
    first, = ws.requests_to("POST", "inference/mnist/None")
    digest = _cached_digest(project, serve)
    assert first.body and "digest" not in first.query and zips == ["serve"]

    ws.route("GET", f"blobs/{digest}", body={"digest": digest, "size": len(first.body)})  # now it has the bytes
    again = kaos("serve", "deploy", "-s", "serve")
    assert again.exit_code == 0, again.output
    assert "Compressing" not in again.stderr and zips == ["serve"]
    _, second = ws.requests_to("POST", "inference/mnist/None")
    assert second.body == b"" and second.query["digest"] == [digest]

    ws.route("GET", f"blobs/{digest}", 404, {"error_code": "BLOB_NOT_FOUND", "message": f"Blob {digest} not found"})
    lost = kaos("serve", "deploy", "-s", "serve")
    assert lost.exit_code == 0, lost.output
    assert zips == ["serve", "serve"]
    _, _, third = ws.requests_to("POST", "inference/mnist/None")
    assert third.body == first.body and "digest" not in third.query
