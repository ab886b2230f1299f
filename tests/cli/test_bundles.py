import hashlib
import os
import socket
import stat
import sys
import time
import zipfile

import pytest
from kaos_model.bundles import MAX_BUNDLE_DEPTH

from kaos_cli.bundles import (TemporaryBundle, UnsafeArchiveError, check_bundle_directory, extract_zip,
                              unsafe_member, zip_directory)
from kaos_cli.errors import KaosError
from tests.support.cli import assert_one_line_failure
from tests.support.cli import kaos as run_kaos
from tests.support.platform import tiny_data_bundle, tiny_train_bundle


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_tree(root):
    (root / "model").mkdir(parents=True)
    (root / "model" / "train").write_text("#!/bin/sh\necho train\n")
    os.chmod(root / "model" / "train", 0o755)
    (root / "model" / "__init__.py").write_text("")
    (root / "Dockerfile").write_text("FROM python\n")
    (root / "empty").mkdir()
    (root / "model" / "__pycache__").mkdir()
    (root / "model" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / "model" / "stale.pyc").write_bytes(b"\0")
    (root / ".DS_Store").write_bytes(b"\0")
    return root


def test_contents_are_zipped_relative_and_junk_skipped(tmp_path):
    src = _make_tree(tmp_path / "bundle")
    dest = zip_directory(src, tmp_path / "out.zip", "source bundle", progress=False)
    with zipfile.ZipFile(dest) as archive:
        names = archive.namelist()
    assert names == sorted(names)
    assert set(names) == {"Dockerfile", "empty/", "model/", "model/__init__.py", "model/train"}


def test_zip_twice_gives_identical_bytes(tmp_path):
    src = _make_tree(tmp_path / "bundle")
    first = zip_directory(src, tmp_path / "a.zip", progress=False)
    now = time.time()
    for path in (src / "model" / "train", src / "Dockerfile"):
        os.utime(path, (now + 1000, now + 1000))
    second = zip_directory(src, tmp_path / "b.zip", progress=False)
    assert _sha(first) == _sha(second)


def test_same_content_elsewhere_gives_identical_bytes(tmp_path):
    one = _make_tree(tmp_path / "one")
    two = _make_tree(tmp_path / "two")
    assert _sha(zip_directory(one, tmp_path / "1.zip", progress=False)) == \
        _sha(zip_directory(two, tmp_path / "2.zip", progress=False))


def test_modes_and_timestamps(tmp_path):
    src = _make_tree(tmp_path / "bundle")
    dest = zip_directory(src, tmp_path / "out.zip", progress=False)
    with zipfile.ZipFile(dest) as archive:
        train = archive.getinfo("model/train")
        dockerfile = archive.getinfo("Dockerfile")
        assert train.date_time == (1980, 1, 1, 0, 0, 0)
        assert stat.S_IMODE(train.external_attr >> 16) == 0o755
        assert stat.S_IMODE(dockerfile.external_attr >> 16) == stat.S_IMODE((src / "Dockerfile").stat().st_mode)
        assert stat.S_ISDIR(archive.getinfo("empty/").external_attr >> 16)
        assert archive.read("model/train") == b"#!/bin/sh\necho train\n"
        out = tmp_path / "extracted"
        archive.extractall(out)
    assert (out / "model" / "train").read_text().startswith("#!/bin/sh")


def test_content_change_changes_bytes(tmp_path):
    src = _make_tree(tmp_path / "bundle")
    first = _sha(zip_directory(src, tmp_path / "a.zip", progress=False))
    (src / "Dockerfile").write_text("FROM python:3.11\n")
    assert _sha(zip_directory(src, tmp_path / "b.zip", progress=False)) != first


def test_progress_bar_label(tmp_path, capsys):
    src = _make_tree(tmp_path / "bundle")
    zip_directory(src, tmp_path / "out.zip", "data bundle")
    assert "Compressing data bundle" in capsys.readouterr().err


def test_temporary_bundle_is_removed(tmp_path):
    src = _make_tree(tmp_path / "bundle")
    with TemporaryBundle(src, "source.zip", "source bundle", progress=False) as path:
        assert path.name == "source.zip" and zipfile.is_zipfile(path)
    assert not path.exists()


@pytest.mark.parametrize("name, unsafe", [
    ("code/a.txt", False), ("code/", False), ("a..b/c", False),
    ("../x", True), ("code/../../x", True), ("/etc/x", True), ("\\x", True), ("C:/x", True), ("..\\x", True),
    ("", True),
])
def test_unsafe_member(name, unsafe):
    assert unsafe_member(name) is unsafe


def test_extract_zip_round_trip_keeps_modes(tmp_path):
    source = tmp_path / "src"
    (source / "model").mkdir(parents=True)
    (source / "model" / "serve").write_text("#!/bin/sh\n")
    (source / "model" / "serve").chmod(0o755)
    (source / "model" / "data.txt").write_text("x")
    (source / "model" / "data.txt").chmod(0o644)
    archive = zip_directory(source, tmp_path / "b.zip", progress=False)
    target = extract_zip(archive, tmp_path / "out" / "nested", progress=False)
    assert (target / "model" / "data.txt").read_text() == "x"
    assert os.stat(target / "model" / "serve").st_mode & 0o777 == 0o755
    assert os.stat(target / "model" / "data.txt").st_mode & 0o777 == 0o644


def test_extract_zip_refuses_to_write_through_a_link_out_of_the_target(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "code").symlink_to(outside)
    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("code/a.txt", "escaped")
    with pytest.raises(UnsafeArchiveError) as problem:
        extract_zip(archive, target, progress=False)
    assert problem.value.member == "code/a.txt" and list(outside.iterdir()) == []


# -- what a bundle directory may hold (kaos_cli/bundles.py's module docstring) --------------------------------
def _arc_names(zip_path):
    with zipfile.ZipFile(zip_path) as archive:
        return archive.namelist()


def test_a_link_inside_the_bundle_is_stored_as_what_it_points_to(tmp_path):
    src = _make_tree(tmp_path / "bundle")
    (src / "model" / "lib").mkdir()
    (src / "model" / "lib" / "utils.py").write_text("X = 1\n")
    (src / "model" / "utils.py").symlink_to("lib/utils.py")
    (src / "model" / "again").symlink_to("lib")
    dest = zip_directory(src, tmp_path / "out.zip", progress=False)
    with zipfile.ZipFile(dest) as archive:
        assert archive.read("model/utils.py") == b"X = 1\n"
        assert archive.read("model/again/utils.py") == b"X = 1\n"
        assert stat.S_ISREG(archive.getinfo("model/utils.py").external_attr >> 16)
    assert _sha(dest) == _sha(zip_directory(src, tmp_path / "again.zip", progress=False))


@pytest.mark.parametrize("make_link, problem", [
    (lambda model: (model / "utils.py").symlink_to("../lib/utils.py"),
     "model/utils.py is a symbolic link to a missing file (../lib/utils.py): replace it with the file or remove it"),
    (lambda model: (model / "utils.py").symlink_to("/etc/hostname"),
     "model/utils.py is a symbolic link to /etc/hostname, outside the bundle directory"),
    (lambda model: (model / "up").symlink_to(".."),
     "model/up is a symbolic link to .., a directory that holds the link: a bundle cannot hold a loop"),
    (lambda model: (model / "self").symlink_to("self"),
     "model/self is a symbolic link that cannot be followed (self: a loop of symbolic links)"),
], ids=["dangling", "outside", "directory-loop", "link-loop"])
def test_links_a_bundle_cannot_hold_are_refused_naming_them(tmp_path, make_link, problem):
    src = _make_tree(tmp_path / "bundle")
    make_link(src / "model")
    with pytest.raises(KaosError) as caught:
        zip_directory(src, tmp_path / "out.zip", progress=False)
    assert caught.value.message.startswith(f"{src}/{problem}"), caught.value.message
    assert not (tmp_path / "out.zip").exists()


def test_special_files_are_refused_naming_them(tmp_path):
    src = _make_tree(tmp_path / "bundle")
    os.mkfifo(src / "model" / "pipe")
    with pytest.raises(KaosError, match="model/pipe is a named pipe \\(fifo\\): a bundle holds regular files"):
        check_bundle_directory(src)
    os.unlink(src / "model" / "pipe")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(src / "model" / "sock"))
        with pytest.raises(KaosError, match="model/sock is a socket"):
            check_bundle_directory(src)


def test_a_name_that_is_not_utf8_is_refused_escaped(tmp_path):
    src = _make_tree(tmp_path / "bundle")
    os.close(os.open(os.fsencode(src / "model") + b"/caf\xe9.txt", os.O_CREAT | os.O_WRONLY))
    with pytest.raises(KaosError) as caught:
        check_bundle_directory(src)
    assert caught.value.message == (f"{src}/model/caf\\xe9.txt has a name that is not valid UTF-8: rename it "
                                    "(bundles carry UTF-8 names only)")


def test_hidden_top_level_entries_are_left_out(tmp_path):
    src = _make_tree(tmp_path / "bundle")
    (src / ".venv" / "bin").mkdir(parents=True)
    (src / ".venv" / "bin" / "python").symlink_to(sys.executable)  # outside: would be refused if it were walked
    (src / "model" / ".hidden").write_text("kept: only the top level is the backend's to ignore")
    names = _arc_names(zip_directory(src, tmp_path / "out.zip", progress=False))
    assert not any(name.startswith(".") for name in names) and "model/.hidden" in names


def test_depth_and_path_bounds_match_the_backend(tmp_path):
    src = tmp_path / "bundle"
    deepest = src.joinpath(*["d"] * (MAX_BUNDLE_DEPTH - 1))
    deepest.mkdir(parents=True)
    (deepest / "leaf").write_text("x")
    assert any(name.count("/") == MAX_BUNDLE_DEPTH - 1 for name in _arc_names(
        zip_directory(src, tmp_path / "ok.zip", progress=False)))
    (deepest / "one-more").mkdir()
    (deepest / "one-more" / "leaf").write_text("x")
    with pytest.raises(KaosError, match=f"is nested {MAX_BUNDLE_DEPTH + 1} levels deep"):
        check_bundle_directory(src)


def test_too_many_entries_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("kaos_cli.bundles.MAX_BUNDLE_MEMBERS", 10)
    src = tmp_path / "bundle"
    src.mkdir()
    for index in range(11):
        (src / f"f{index}").write_text("x")
    with pytest.raises(KaosError, match=f"{src} holds more than 10 files and directories"):
        check_bundle_directory(src)


# -- the real CLI against a real backend: refused before anything is uploaded ---------------------------------
@pytest.fixture
def cli_project(backend, tmp_path):
    """A project directory initialised against the real backend, workspace `bundles` current."""
    project = tmp_path / "cli-project"
    project.mkdir()
    assert run_kaos(project, "init", "-e", backend.url, "-t", backend.token).code == 0
    assert run_kaos(project, "workspace", "create", "-n", "bundles").code == 0
    return project


def _nothing_uploaded(backend):
    assert not [path for path in (backend.data_dir / "blobs").rglob("*") if path.is_file()]
    inputs = backend.get("train/bundles/inspect").json()
    assert inputs["source_glob"] is None and inputs["data_glob"] == "/data:null", inputs


def _bundles(project):
    source = tiny_train_bundle(project / "source", "print('train')\n")
    data = tiny_data_bundle(project / "data")
    return source, data


@pytest.mark.parametrize("where, link_target, problem", [
    ("data", "../lib/rows.csv", "is a symbolic link to a missing file (../lib/rows.csv)"),
    ("data", "/etc/hostname", "is a symbolic link to /etc/hostname, outside the bundle directory"),
    ("source", "../lib/utils.py", "is a symbolic link to a missing file (../lib/utils.py)"),
], ids=["data-dangling", "data-outside", "source-dangling"])
def test_train_deploy_refuses_a_bad_link_before_uploading_anything(backend, cli_project, where, link_target,
                                                                     problem):
    source, data = _bundles(cli_project)
    folder = {"source": source / "tiny" / "model", "data": data / "features" / "training"}[where]
    (folder / "linked").symlink_to(link_target)
    result = run_kaos(cli_project, "train", "deploy", "-s", "source", "-d", "data")
    assert_one_line_failure(result)
    relative = {"source": "source/tiny/model/linked", "data": "data/features/training/linked"}[where]
    assert result.err.strip().startswith(f"Error - {relative} {problem}"), result
    _nothing_uploaded(backend)


def test_train_deploy_refuses_a_name_that_is_not_utf8(backend, cli_project):
    source, data = _bundles(cli_project)
    os.close(os.open(os.fsencode(data / "features") + b"/caf\xe9.txt", os.O_CREAT | os.O_WRONLY))
    result = run_kaos(cli_project, "train", "deploy", "-s", "source", "-d", "data")
    assert_one_line_failure(result)
    assert result.err.strip() == ("Error - data/features/caf\\xe9.txt has a name that is not valid UTF-8: rename "
                                  "it (bundles carry UTF-8 names only)")
    assert "Unexpected error" not in result.text
    _nothing_uploaded(backend)


def test_serve_deploy_refuses_a_dangling_link(backend, cli_project):
    serve = cli_project / "serve" / "tiny"
    (serve / "model").mkdir(parents=True)
    (serve / "Dockerfile").write_text("FROM python:3.11-slim\n")
    for name in ("__init__.py", "serve", "web-requirements.txt"):
        (serve / "model" / name).write_text("")
    (serve / "model" / "utils.py").symlink_to("../lib/utils.py")
    result = run_kaos(cli_project, "serve", "deploy", "-s", "serve")
    assert_one_line_failure(result)
    assert result.err.strip().startswith("Error - serve/tiny/model/utils.py is a symbolic link to a missing file")
    _nothing_uploaded(backend)
    assert backend.get("inference/bundles").json()["response"] == {"endpoints": [], "building": []}


def test_train_deploy_still_uploads_a_clean_folder_with_an_inner_link(backend, cli_project):
    source, data = _bundles(cli_project)
    (data / "features" / "training" / "same.csv").symlink_to("data.csv")
    result = run_kaos(cli_project, "train", "deploy", "-s", "source", "-d", "data")
    assert result.code == 0, result
    assert backend.get("train/bundles/inspect").json()["data_glob"].startswith("/features:")
