import os
import stat
import tracemalloc
import zipfile

import pytest
from kaos_model.bundles import MAX_BUNDLE_DEPTH, MAX_BUNDLE_MEMBERS, MAX_BUNDLE_PATH_BYTES
from sqlalchemy import select

from kaos_backend import bundles, central_directory
from kaos_backend.bundle_tree import BundleTree
from kaos_backend.control.builds import BuildController
from kaos_backend.control.trainings import TrainController
from kaos_backend.errors import InvalidBundle, PayloadTooLarge
from kaos_backend.executors.local import LocalExecutor
from kaos_backend.layout import COMPLETE_MARKER
from kaos_backend.models import Job, Partition
from kaos_backend.services.uploads import body_from_bytes
from tests.backend.helpers import (SERVE_FILES, TRAIN_FILES, features_zip, source_entries, source_zip,
                                   symlink_entry, zip_bytes)


@pytest.fixture
def write(tmp_path):
    def write(data: bytes, name: str = "bundle.zip"):
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return write


def test_valid_data_bundle(write):
    layout = bundles.inspect_bundle(write(features_zip()), "features")
    assert layout == bundles.BundleLayout("features", 2, 12)


@pytest.mark.parametrize("data", [b"", b"not a zip at all", features_zip()[:-30], features_zip()[:100]])
def test_malformed(write, data):
    with pytest.raises(InvalidBundle, match="^Bundle is malformed$"):
        bundles.inspect_bundle(write(data), "features")


def test_corrupt_member_data_is_malformed(write):
    data = bytearray(zip_bytes({"features/a.csv": "x" * 5000}))
    data[60] ^= 0xFF  # inside the compressed data of the only member
    with pytest.raises(InvalidBundle, match="malformed"):
        bundles.inspect_bundle(write(bytes(data)), "features")


@pytest.mark.parametrize("entries", [{}, {"features/": None}, {"features/": None, "features/sub/": None}])
def test_empty(write, entries):
    with pytest.raises(InvalidBundle, match="^Bundle must be non-empty$"):
        bundles.inspect_bundle(write(zip_bytes(entries)), "features")
    with pytest.raises(InvalidBundle, match="^Bundle must be non-empty$"):
        bundles.inspect_bundle(write(zip_bytes(entries)), "source-train")


def test_hidden_root_entries_are_ignored(write):
    data = features_zip(extra={".DS_Store": "x", "__MACOSX/features/._a": "x", ".git/config": "x"})
    assert bundles.inspect_bundle(write(data), "features").root_name == "features"
    entries = source_entries()
    entries.update({".DS_Store": "x", "__MACOSX/": None, "__MACOSX/mnist/._train": "x"})
    assert bundles.inspect_bundle(write(zip_bytes(entries)), "source-train").root_name == "mnist"


def test_only_hidden_entries_is_empty(write):
    with pytest.raises(InvalidBundle, match="non-empty"):
        bundles.inspect_bundle(write(zip_bytes({".DS_Store": "x", "__MACOSX/x": "y"})), "features")


@pytest.mark.parametrize("name, problem", [
    ("../evil", "'..' component"),
    ("features/../../evil", "'..' component"),
    ("/abs/path", "absolute path"),
    ("C:/windows/evil", "drive letter"),
    ("features\\..\\evil", "backslash"),
    ("features/" + "x" * 300, "longer than 255"),
])
def test_unsafe_paths(write, name, problem):
    data = features_zip(extra={name: "evil"})
    with pytest.raises(InvalidBundle, match="not allowed") as caught:
        bundles.inspect_bundle(write(data), "features")
    assert name in caught.value.message and problem in caught.value.message


def test_unsafe_hidden_entry_is_still_refused(write):
    # a '..' entry starts with a dot: safety is checked before hidden entries are dropped
    with pytest.raises(InvalidBundle, match="not allowed"):
        bundles.inspect_bundle(write(features_zip(extra={"../.evil": "x"})), "features")


@pytest.mark.parametrize("mode, problem", [
    (stat.S_IFLNK | 0o777, "symbolic link"),
    (stat.S_IFCHR | 0o644, "device"),
    (stat.S_IFBLK | 0o644, "device"),
    (stat.S_IFIFO | 0o644, "special file"),
    (stat.S_IFSOCK | 0o644, "special file"),
])
def test_special_members(write, mode, problem):
    data = zip_bytes({"features/a.csv": "1"}, special=[("features/link", mode, b"/etc/passwd")])
    with pytest.raises(InvalidBundle, match=problem) as caught:
        bundles.inspect_bundle(write(data), "features")
    assert "features/link" in caught.value.message


def test_encrypted_member(write):
    data = bytearray(features_zip())
    # set the "encrypted" flag of the first member in its local header and central directory entry
    local = data.index(b"PK\x03\x04")
    data[local + 6] |= 1
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 1
    with pytest.raises(InvalidBundle, match="encrypted"):
        bundles.inspect_bundle(write(bytes(data)), "features")


def test_too_big_uncompressed(write):
    data = zip_bytes({"features/zeros.bin": b"\0" * 3_000_000})
    assert len(data) < 10_000
    with pytest.raises(PayloadTooLarge, match="too large"):
        bundles.inspect_bundle(write(data), "features", max_uncompressed=2_000_000)
    assert bundles.inspect_bundle(write(data), "features", max_uncompressed=3_000_000).total_size == 3_000_000


def test_data_bundle_with_several_roots(write):
    data = zip_bytes({"features/a.csv": "1", "other/b.csv": "2", "top.csv": "3"})
    with pytest.raises(InvalidBundle, match="exactly one top-level directory, found 3 entries: features, other, "
                                            "top.csv"):
        bundles.inspect_bundle(write(data), "features")


def test_data_bundle_with_a_file_at_root(write):
    with pytest.raises(InvalidBundle, match="found the file a.csv"):
        bundles.inspect_bundle(write(zip_bytes({"a.csv": "1"})), "data-notebook")


def test_file_and_directory_clash(write):
    data = zip_bytes({"features/a": "1", "features/a/b": "2"})
    with pytest.raises(InvalidBundle, match="both a file and a directory"):
        bundles.inspect_bundle(write(data), "features")


@pytest.mark.parametrize("kind, files", [("source-train", TRAIN_FILES), ("source-serve", SERVE_FILES),
                                         ("source-notebook", ())])
def test_valid_source_bundles(write, kind, files):
    assert bundles.inspect_bundle(write(source_zip("mnist", files)), kind).root_name == "mnist"


def test_source_missing_dockerfile(write):
    with pytest.raises(InvalidBundle, match="^Missing Dockerfile in source-code bundle$"):
        bundles.inspect_bundle(write(source_zip(dockerfile=False)), "source-train")


def test_source_missing_model(write):
    data = zip_bytes({"mnist/Dockerfile": "FROM x", "mnist/code/train": "x"})
    with pytest.raises(InvalidBundle, match="^Missing model directory in source-code bundle$"):
        bundles.inspect_bundle(write(data), "source-notebook")


def test_source_missing_root(write):
    with pytest.raises(InvalidBundle, match="^Missing root directory in source-code bundle$"):
        bundles.inspect_bundle(write(zip_bytes({"Dockerfile": "FROM x"})), "source-train")


def test_source_too_many_roots(write):
    entries = source_entries("one")
    entries.update(source_entries("two"))
    with pytest.raises(InvalidBundle, match="^Too many directories in source-code bundle$"):
        bundles.inspect_bundle(write(zip_bytes(entries)), "source-train")


def test_source_stray_root_file(write):
    entries = source_entries()
    entries["README.md"] = "hi"
    with pytest.raises(InvalidBundle, match="Unexpected file README.md"):
        bundles.inspect_bundle(write(zip_bytes(entries)), "source-train")


@pytest.mark.parametrize("kind, required", [("source-train", TRAIN_FILES), ("source-serve", SERVE_FILES)])
def test_source_missing_each_required_file(write, kind, required):
    for missing in required:
        files = [name for name in required if name != missing]
        with pytest.raises(InvalidBundle, match=f"^Missing file {missing} in model directory of source-code bundle$"):
            bundles.inspect_bundle(write(source_zip("mnist", files)), kind)


def test_safe_extract(tmp_path, write):
    entries = source_entries()
    entries[".DS_Store"] = "hidden"
    data = zip_bytes(entries, special=[("mnist/model/run.sh", stat.S_IFREG | 0o4755, b"#!/bin/sh\n")])
    dest = tmp_path / "out"
    written = bundles.safe_extract(write(data), dest)
    names = sorted(str(path.relative_to(dest)) for path in written)
    assert names == ["mnist/Dockerfile", "mnist/model/__init__.py", "mnist/model/requirements.txt",
                     "mnist/model/run.sh", "mnist/model/train"]
    assert not (dest / ".DS_Store").exists()
    run_mode = stat.S_IMODE(os.stat(dest / "mnist/model/run.sh").st_mode)
    assert run_mode == 0o755  # exec bits kept, setuid dropped
    assert stat.S_IMODE(os.stat(dest / "mnist/Dockerfile").st_mode) == 0o644
    assert (dest / "mnist/model/train").read_text() == "# train\n"


@pytest.mark.parametrize("evil", [
    {"entries": {"features/a": "1", "../evil": "x"}},
    {"entries": {"features/a": "1", "/tmp/evil-abs": "x"}},
    {"entries": {"features/a": "1"}, "special": [symlink_entry("features/link", "/etc")]},
])
def test_safe_extract_writes_nothing_outside(tmp_path, write, evil):
    bundle = write(zip_bytes(evil["entries"], special=evil.get("special", ())))
    dest = tmp_path / "deep" / "out"
    before = set(tmp_path.rglob("*"))
    with pytest.raises(InvalidBundle, match="not allowed"):
        bundles.safe_extract(bundle, dest)
    after = set(tmp_path.rglob("*")) - before
    assert after <= {dest.parent, dest}  # at most the (empty) destination was created
    assert not any(dest.rglob("*"))
    assert not os.path.exists("/tmp/evil-abs")


def test_safe_extract_respects_the_uncompressed_budget(tmp_path, write):
    bundle = write(zip_bytes({"features/zeros": b"\0" * 100_000}))
    with pytest.raises(PayloadTooLarge):
        bundles.safe_extract(bundle, tmp_path / "out", max_uncompressed=50_000)


def test_safe_extract_refuses_a_lying_size(tmp_path, write):
    # a central directory claiming a smaller size than the data holds: zipfile stops at the claimed size and the
    # CRC check refuses the member; nothing beyond the claimed size is written
    data = bytearray(zip_bytes({"features/a": b"A" * 1000}))
    central = data.index(b"PK\x01\x02")
    data[central + 24:central + 28] = (10).to_bytes(4, "little")
    path = write(bytes(data))
    with pytest.raises(InvalidBundle, match="malformed"):
        bundles.safe_extract(path, tmp_path / "out")
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("features/a").file_size == 10


# -- bounds: depth, path length, member count, central directory; checked before any tree is built ----------
def nested(depth: int, leaf: str = "leaf.csv", root: str = "features") -> str:
    """A member path of exactly `depth` components: `features/d/d/.../leaf.csv`."""
    return "/".join([root] + ["d"] * (depth - 2) + [leaf])


def test_a_member_at_the_depth_limit_is_accepted_and_extracted(tmp_path, write):
    name = nested(MAX_BUNDLE_DEPTH)
    bundle = write(zip_bytes({name: "deep\n"}))
    assert bundles.inspect_bundle(bundle, "features").file_count == 1
    written = bundles.safe_extract(bundle, tmp_path / "out")
    assert [path.relative_to(tmp_path / "out").as_posix() for path in written] == [name]
    assert written[0].read_text() == "deep\n"


@pytest.mark.parametrize("depth", [MAX_BUNDLE_DEPTH + 1, 2_100, 8_000])
def test_a_member_nested_too_deep_is_refused_naming_it(write, depth):
    name = nested(depth)
    with pytest.raises(InvalidBundle, match=f"nested {depth} levels deep, the limit is {MAX_BUNDLE_DEPTH}") as caught:
        bundles.inspect_bundle(write(zip_bytes({"features/a.csv": "1", name: "x"})), "features")
    message = caught.value.message
    assert message.startswith("Bundle member features/d/d/") and "/d/leaf.csv" in message
    assert len(message) < 700  # shortened: a 16 KB name is not repeated whole


def test_a_directory_member_nested_too_deep_is_refused(write):
    data = zip_bytes({"features/a.csv": "1", nested(MAX_BUNDLE_DEPTH + 1, leaf="d") + "/": None})
    with pytest.raises(InvalidBundle, match=f"nested {MAX_BUNDLE_DEPTH + 1} levels deep"):
        bundles.inspect_bundle(write(data), "features")


def test_a_path_over_the_byte_limit_is_refused(write):
    long_name = "features/" + "/".join(["n" * 200] * 30) + "/a.csv"  # 31 levels, 6 KB
    assert len(long_name.encode()) > MAX_BUNDLE_PATH_BYTES
    with pytest.raises(InvalidBundle, match=f"bytes long, the limit is {MAX_BUNDLE_PATH_BYTES}"):
        bundles.inspect_bundle(write(zip_bytes({long_name: "x"})), "features")


def test_deep_members_cost_no_memory(write):
    """On an 8,000-deep member the old tree kept every prefix of the path: 250 MB for one 32 KB bundle."""
    bundle = write(zip_bytes({nested(8_000, leaf=f"leaf{index}"): "x" for index in range(3)}))
    tracemalloc.start()
    try:
        with pytest.raises(InvalidBundle, match="levels deep"):
            bundles.inspect_bundle(bundle, "features")
        with pytest.raises(InvalidBundle, match="levels deep"):
            bundles.safe_extract(bundle, bundle.parent / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, peak


def test_the_refusal_comes_from_the_central_directory_before_zipfile_indexes_it(write, monkeypatch):
    bundle = write(zip_bytes({"features/a.csv": "1", nested(100): "x"}))
    monkeypatch.setattr(bundles.zipfile, "ZipFile", lambda *args, **kwargs: pytest.fail("zipfile was opened"))
    with pytest.raises(InvalidBundle, match="levels deep"):
        bundles.inspect_bundle(bundle, "features")


def many_members_zip(path, names, content=b""):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name in names:
            archive.writestr(name, content)
    return path


@pytest.mark.timeout(300)
def test_a_hundred_thousand_members_in_one_flat_directory_are_checked(tmp_path):
    # directory "features" + files up to the bound: MAX_BUNDLE_MEMBERS members in all
    names = [f"features/{index:06d}.csv" for index in range(MAX_BUNDLE_MEMBERS - 1)]
    bundle = many_members_zip(tmp_path / "flat.zip", names)
    layout = bundles.inspect_bundle(bundle, "features")
    assert layout == bundles.BundleLayout("features", MAX_BUNDLE_MEMBERS - 1, 0)


@pytest.mark.timeout(300)
def test_a_hundred_thousand_members_sixty_levels_deep_are_checked(tmp_path):
    deep_dir = nested(61, leaf="")  # features + 59 directories
    names = [f"{deep_dir}{index:06d}.csv" for index in range(MAX_BUNDLE_MEMBERS - 60)]
    bundle = many_members_zip(tmp_path / "deep.zip", names)
    layout = bundles.inspect_bundle(bundle, "features")
    assert layout.file_count == MAX_BUNDLE_MEMBERS - 60


@pytest.mark.timeout(300)
@pytest.mark.parametrize("names", [
    [f"features/{index}" for index in range(MAX_BUNDLE_MEMBERS + 1)],            # too many entries
    [f"features/{index}/a" for index in range(MAX_BUNDLE_MEMBERS // 2 + 1)],     # too many with implied dirs
])
def test_more_members_than_the_limit_are_refused(tmp_path, names):
    bundle = many_members_zip(tmp_path / "many.zip", names)
    with pytest.raises(InvalidBundle, match=f"more than {MAX_BUNDLE_MEMBERS:,} members"):
        bundles.inspect_bundle(bundle, "features")
    with pytest.raises(InvalidBundle, match=f"more than {MAX_BUNDLE_MEMBERS:,} members"):
        bundles.safe_extract(bundle, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())


def test_a_huge_central_directory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(bundles, "MAX_DIRECTORY_BYTES", 10_000)
    bundle = many_members_zip(tmp_path / "toc.zip", [f"features/{index:04d}" for index in range(1000)])
    with pytest.raises(InvalidBundle, match="central directory"):
        bundles.inspect_bundle(bundle, "features")


def test_a_member_name_with_control_characters_is_shown_escaped(write):
    with pytest.raises(InvalidBundle) as caught:
        bundles.inspect_bundle(write(zip_bytes({"features/a\nb/../x": "1"})), "features")
    assert "features/a\\nb/../x" in caught.value.message and "\n" not in caught.value.message


@pytest.mark.parametrize("comment, prefix", [(b"", b""), (b"a comment", b""), (b"", b"#!/bin/sh\nexit 0\n")])
def test_the_central_directory_is_found_where_zipfile_finds_it(tmp_path, comment, prefix):
    path = tmp_path / "any.zip"
    path.write_bytes(prefix)
    with zipfile.ZipFile(path, "a") as archive:
        for index in range(70_000):  # over 65,535 entries: zip64 end records
            archive.writestr(f"features/{index}", b"")
        archive.comment = comment
    with open(path, "rb") as handle, zipfile.ZipFile(path) as archive:
        directory = central_directory.locate(handle)
        names = [name for name, _ in central_directory.entry_names(handle, directory)]
        assert directory.start == archive.start_dir
        assert names == [info.filename.encode() for info in archive.infolist()]


@pytest.mark.parametrize("data", [
    b"PK\x05\x06" + b"\0" * 8 + (1000).to_bytes(4, "little") + b"\0" * 6,          # a directory before the file
    b"x" * 100 + b"PK\x05\x06" + b"\0" * 8 + (46).to_bytes(4, "little") + b"\0" * 6,  # an entry without signature
    b"x" * 100 + b"PK\x05\x06" + b"\0" * 12 + b"\xff" * 4,                          # a cut end record
])
def test_a_broken_end_record_is_malformed(write, data):
    with pytest.raises(InvalidBundle, match="^Bundle is malformed$"):
        bundles.inspect_bundle(write(data), "features")


def test_linear_tree_answers_children(write):
    members = bundles.read_members(bundles.open_zip(write(zip_bytes(
        {"r/b/x": "1", "r/a/": None, "r/c": "2", "r/a/y/z": "3", "other/": None}))))
    tree = BundleTree(members)
    assert tree.children(()) == (["other", "r"], [])
    assert tree.children(("r",)) == (["a", "b"], ["c"])
    assert tree.children(("r", "a")) == (["y"], [])
    assert tree.children(("nope",)) == ([], [])
    assert tree.has_files_under(("r",)) and tree.has_files_under(("r", "a"))
    assert not tree.has_files_under(("other",)) and not tree.has_files_under(("nope",))


# -- a bundle stored before these checks: its job fails with the reason, once -------------------------------
def _store_unchecked(services, monkeypatch, submit, data: bytes):
    """Record `data` as an old backend would have: without today's checks."""
    def unchecked(path, kind, max_uncompressed=None):
        return bundles.BundleLayout("features" if kind in bundles.DATA_KINDS else "mnist", 1, 1)
    with monkeypatch.context() as patch:
        patch.setattr(bundles, "inspect_bundle", unchecked)
        return submit(body_from_bytes(data))


def _finished(services, controller, kind: str, ticks: int = 5) -> Job:
    for _ in range(ticks):
        controller.tick()
    with services.db.session_scope() as session:
        job = session.scalar(select(Job).where(Job.kind == kind))
        session.expunge(job)
        return job


def test_a_stored_data_bundle_nested_too_deep_fails_its_training(services, monkeypatch):
    services.workspaces.create("ws")
    source = services.train.submit_source("ws", body_from_bytes(source_zip()))
    with services.db.session_scope() as session:
        build = session.get(Job, source["job_id"])
        build.state, build.image = "JOB_SUCCESS", "pretend-image"  # pretend the image is built (and still there)
    monkeypatch.setattr(LocalExecutor, "is_image_ready", lambda self, image: True)
    _store_unchecked(services, monkeypatch, lambda body: services.train.submit_features("ws", body),
                     zip_bytes({nested(2_100): "x"}))
    job = _finished(services, TrainController(services), "train")
    assert job.state == "JOB_FAILURE"
    with services.db.session_scope() as session:
        partition, = session.scalars(select(Partition).where(Partition.job_id == job.id))
        assert partition.state == "JOB_FAILURE" and "nested 2100 levels deep" in partition.reason
    assert "nested 2100 levels deep" in services.jobs.log_text("ws", job.id)
    assert not list((services.config.data_dir / "extracted").glob(f"*/{COMPLETE_MARKER}"))


def test_a_stored_source_bundle_nested_too_deep_fails_its_build(services, monkeypatch):
    services.workspaces.create("ws")
    entries = source_entries()
    entries[nested(2_100, root="mnist")] = "x"
    answer = _store_unchecked(services, monkeypatch, lambda body: services.train.submit_source("ws", body),
                              zip_bytes(entries))
    job = _finished(services, BuildController(services), "build-train")
    assert job.id == answer["job_id"] and job.state == "JOB_FAILURE"
    assert "nested 2100 levels deep" in job.reason




# -- names zipfile would bend: a NUL byte cuts a name short, a path stored twice keeps only the last -----------
def renamed(data: bytes, placeholder: str, name: bytes) -> bytes:
    """`data` with every stored `placeholder` name (local headers and central directory) replaced by `name`, a
    name of the same length that `zipfile` would not write itself."""
    assert len(placeholder.encode()) == len(name) and data.count(placeholder.encode()) >= 2
    return data.replace(placeholder.encode(), name)


def nul_named_zip() -> bytes:
    return renamed(features_zip(extra={"features/a.csv": "good\n", "features/aXb.csv": "evil\n"}),
                   "features/aXb.csv", b"features/a\0b.csv")


def test_zipfile_itself_cuts_a_name_at_a_nul_byte(write):
    with zipfile.ZipFile(write(nul_named_zip())) as archive:  # what the checks below protect against
        assert [info.filename for info in archive.infolist()].count("features/a") == 1


def test_a_member_name_with_a_nul_byte_is_refused_naming_it_escaped(tmp_path, write):
    bundle = write(nul_named_zip())
    expected = "Bundle member features/a\\x00b.csv is not allowed: a NUL byte in its name"
    with pytest.raises(InvalidBundle) as caught:
        bundles.inspect_bundle(bundle, "features")
    assert caught.value.message == expected and caught.value.status == 400
    with pytest.raises(InvalidBundle) as caught:
        bundles.safe_extract(bundle, tmp_path / "out")
    assert caught.value.message == expected
    assert not any((tmp_path / "out").iterdir())


def test_a_nul_byte_is_refused_even_when_zipfile_has_read_the_directory(write):
    # read_members (used on an archive zipfile has indexed) refuses it too, naming it whole
    with zipfile.ZipFile(write(nul_named_zip())) as archive, pytest.raises(InvalidBundle) as caught:
        bundles.read_members(archive)
    assert "features/a\\x00b.csv is not allowed: a NUL byte" in caught.value.message


def twice_stored_zip() -> bytes:
    """`features/a.csv` stored twice, with different contents (zipfile warns but would write it too)."""
    return renamed(features_zip(extra={"features/a.csv": "first\n", "features/b.csv": "second\n"}),
                   "features/b.csv", b"features/a.csv")


@pytest.mark.parametrize("data, shown_name", [
    (twice_stored_zip(), "features/a.csv"),
    (zip_bytes({"features/a.csv": "1", "features/./a.csv": "2"}), "features/a.csv"),  # one path, two spellings
    (zip_bytes({"features/a.csv": "1", "features//a.csv": "2"}), "features/a.csv"),
    (renamed(zip_bytes({"features/a.csv": "1", "features/sub/": None, "features/suc/": None}),
             "features/suc/", b"features/sub/"), "features/sub"),
    (renamed(zip_bytes({"features/a.csv": "1", "features/t\tb.csv": "1", "features/t\tc.csv": "2"}),
             "features/t\tc.csv", b"features/t\tb.csv"), "features/t\\tb.csv"),
])
def test_two_members_of_the_same_path_are_refused_naming_it(tmp_path, write, data, shown_name):
    bundle = write(data)
    expected = f"Bundle member {shown_name} is stored more than once: a path may appear only once in a bundle"
    with pytest.raises(InvalidBundle) as caught:
        bundles.inspect_bundle(bundle, "features")
    assert caught.value.message == expected
    with pytest.raises(InvalidBundle) as caught:
        bundles.safe_extract(bundle, tmp_path / "out")
    assert caught.value.message == expected
    assert not any((tmp_path / "out").iterdir())


def test_a_directory_implied_first_and_listed_later_is_not_a_duplicate(write):
    data = zip_bytes({"features/sub/a.csv": "1", "features/sub/": None, "features/": None})
    assert bundles.inspect_bundle(write(data), "features").file_count == 1


def test_a_source_bundle_with_a_file_stored_twice_is_refused(write):
    data = renamed(zip_bytes(dict(source_entries(), **{"mnist/model/trair": "# other\n"})),
                   "mnist/model/trair", b"mnist/model/train")
    with pytest.raises(InvalidBundle, match="^Bundle member mnist/model/train is stored more than once"):
        bundles.inspect_bundle(write(data), "source-train")


@pytest.mark.parametrize("data, shown_name", [(nul_named_zip(), "features/a\\x00b.csv"),
                                              (twice_stored_zip(), "features/a.csv")])
def test_the_upload_route_answers_400_invalid_bundle_naming_the_member(make_services, data, shown_name):
    from kaos_backend.app import create_app

    services = make_services(token="bundle-token")
    client = create_app(services.config, services).test_client()
    client.environ_base["HTTP_X_TOKEN"] = "bundle-token"
    assert client.post("/api/workspace/ws").status_code == 201
    response = client.post("/api/data/ws/features", data=data, content_type="application/zip")
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error_code"] == "INVALID_BUNDLE" and f"Bundle member {shown_name} " in body["message"]
    assert services.train.inspect("ws")["data_glob"] == "/data:null"  # nothing recorded


@pytest.mark.parametrize("data, problem", [(nul_named_zip(), "features/a\\x00b.csv is not allowed"),
                                           (twice_stored_zip(), "features/a.csv is stored more than once")])
def test_a_stored_data_bundle_with_a_bent_name_fails_its_training(services, monkeypatch, data, problem):
    services.workspaces.create("ws")
    source = services.train.submit_source("ws", body_from_bytes(source_zip()))
    with services.db.session_scope() as session:
        build = session.get(Job, source["job_id"])
        build.state, build.image = "JOB_SUCCESS", "pretend-image"  # pretend the image is built (and still there)
    monkeypatch.setattr(LocalExecutor, "is_image_ready", lambda self, image: True)
    _store_unchecked(services, monkeypatch, lambda body: services.train.submit_features("ws", body), data)
    job = _finished(services, TrainController(services), "train")
    assert job.state == "JOB_FAILURE" and problem in job.reason
    assert problem in services.jobs.log_text("ws", job.id)
    assert not list((services.config.data_dir / "extracted").glob(f"*/{COMPLETE_MARKER}"))
