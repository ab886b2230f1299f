import hashlib
import os
import stat
import time
import zipfile

import pytest

from kaos_cli.bundles import TemporaryBundle, UnsafeArchiveError, extract_zip, unsafe_member, zip_directory


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
