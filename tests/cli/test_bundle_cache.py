"""The bundle digest cache (kaos_cli/bundle_cache.py): what its fingerprint sees, when it trusts an entry, and its
file (bounded, private, atomic, never fatal)."""
import json
import os
import stat
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from kaos_cli import bundle_cache
from kaos_cli.bundle_cache import CACHE_NAME, MAX_FOLDERS, DigestCache, fingerprint, is_racy
from kaos_cli.bundles import bundle_entries

DIGEST = "d" * 64
OTHER = "e" * 64


def _folder(root):
    (root / "features" / "training").mkdir(parents=True)
    (root / "features" / "training" / "a.csv").write_text("1,2,3\n")
    (root / "features" / "training" / "b.csv").write_text("4,5,6\n")
    (root / "features" / "lib").mkdir()
    (root / "features" / "lib" / "target.csv").write_text("7,8,9\n")
    (root / "features" / "linked.csv").symlink_to("lib/target.csv")
    return root


def _print(root):
    return fingerprint(bundle_entries(root))


def _same_size_edit_with_mtime_put_back(root):
    path = root / "features" / "training" / "a.csv"
    before = path.stat()
    path.write_text("9,9,9\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _replace_with_identical_copy(root):
    path = root / "features" / "training" / "a.csv"
    copy = root / "copy.tmp"
    copy.write_bytes(path.read_bytes())
    os.utime(copy, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    os.replace(copy, path)


CHANGES = {
    "content, same size, mtime put back": _same_size_edit_with_mtime_put_back,
    "size": lambda root: (root / "features" / "training" / "a.csv").write_text("1,2,3,4\n"),
    "mode": lambda root: (root / "features" / "training" / "a.csv").chmod(0o600),
    "directory mode": lambda root: (root / "features" / "training").chmod(0o700),
    "new file": lambda root: (root / "features" / "training" / "c.csv").write_text("x"),
    "new empty directory": lambda root: (root / "features" / "empty").mkdir(),
    "removed file": lambda root: (root / "features" / "training" / "b.csv").unlink(),
    "renamed file": lambda root: (root / "features" / "training" / "b.csv").rename(
        root / "features" / "training" / "c.csv"),
    "the target of a link": lambda root: (root / "features" / "lib" / "target.csv").write_text("0,0,0,0\n"),
    "a link pointed elsewhere": lambda root: ((root / "features" / "linked.csv").unlink(),
                                              (root / "features" / "linked.csv").symlink_to("training/a.csv")),
    "file replaced by an identical copy": _replace_with_identical_copy,
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_every_change_a_zip_would_see_changes_the_fingerprint(tmp_path, change):
    root = _folder(tmp_path / "data")
    before = _print(root)
    change(root)
    assert _print(root) != before


UNSEEN = {
    "reading the files": lambda root: [path.read_bytes() for path in root.rglob("*.csv")],
    "a .pyc file": lambda root: (root / "features" / "x.pyc").write_bytes(b"\0"),
    "a __pycache__ directory": lambda root: (root / "features" / "__pycache__").mkdir(),
    "a hidden top-level entry": lambda root: (root / ".git").mkdir(),
    "a directory's mtime": lambda root: os.utime(root / "features", (0, 0)),
}


@pytest.mark.parametrize("change", UNSEEN.values(), ids=UNSEEN.keys())
def test_what_a_zip_leaves_out_does_not_change_the_fingerprint(tmp_path, change):
    root = _folder(tmp_path / "data")
    before = _print(root)
    change(root)
    assert _print(root) == before


def _entry(name, mtime_s, ctime_s=None):
    info = SimpleNamespace(st_mtime_ns=int(mtime_s * 1e9), st_ctime_ns=int((ctime_s or mtime_s) * 1e9),
                           st_mode=stat.S_IFREG | 0o644)
    return name, None, info


def test_files_touched_within_the_racy_window_are_racy():
    walk = int(1_000_000 * 1e9)
    assert not is_racy([_entry("a", 999_990)], walk, racy_seconds=3)
    assert is_racy([_entry("a", 999_990), _entry("b", 999_998)], walk, racy_seconds=3)
    assert is_racy([_entry("a", 999_990, ctime_s=999_999)], walk, racy_seconds=3)  # mtime put back
    assert is_racy([_entry("a", 1_000_050)], walk, racy_seconds=3)  # from the future (another clock)
    assert not is_racy([("dir/", None, SimpleNamespace(st_mtime_ns=walk, st_ctime_ns=walk))], walk, racy_seconds=3)


# -- the file ---------------------------------------------------------------------------------------------------
@pytest.fixture
def cache_file(tmp_path):
    return tmp_path / ".kaos" / CACHE_NAME


@pytest.fixture
def warnings():
    return []


def _cache(cache_file, warnings):
    return DigestCache(cache_file, warn=warnings.append)


def test_remember_and_lookup(tmp_path, cache_file, warnings):
    folder = tmp_path / "data"
    _cache(cache_file, warnings).remember(folder, "f" * 64, DIGEST, trusted=True)
    cache = _cache(cache_file, warnings)
    assert cache.lookup(folder, "f" * 64) == DIGEST
    assert cache.lookup(str(folder) + "/../data", "f" * 64) == DIGEST  # the real path is the key
    assert cache.lookup(folder, "0" * 64) is None
    assert cache.lookup(tmp_path / "elsewhere", "f" * 64) is None
    cache.remember(folder, "f" * 64, OTHER, trusted=False)
    assert _cache(cache_file, warnings).lookup(folder, "f" * 64) is None  # racy: never trusted
    assert warnings == []
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    # no temporary file left; the lock file stays (removing it would race with a CLI that opened it)
    assert sorted(path.name for path in cache_file.parent.iterdir()) == [CACHE_NAME, CACHE_NAME + ".lock"]


def test_the_least_recently_used_folders_go_first(tmp_path, cache_file, warnings, monkeypatch):
    clock = iter(range(1, 10_000))
    monkeypatch.setattr(bundle_cache, "time", SimpleNamespace(time=lambda: float(next(clock)),
                                                                monotonic=time.monotonic, sleep=time.sleep))
    cache = _cache(cache_file, warnings)
    folders = [tmp_path / f"data-{index}" for index in range(MAX_FOLDERS + 5)]
    for folder in folders[:MAX_FOLDERS]:
        cache.remember(folder, "f" * 64, DIGEST, trusted=True)
    cache.remember(folders[0], "f" * 64, DIGEST, trusted=True)  # a hit refreshes it
    for folder in folders[MAX_FOLDERS:]:
        cache.remember(folder, "f" * 64, DIGEST, trusted=True)
    kept = json.loads(cache_file.read_text())["folders"]
    assert len(kept) == MAX_FOLDERS
    assert str(folders[0]) in kept and str(folders[-1]) in kept
    assert not any(str(folder) in kept for folder in folders[1:6])


@pytest.mark.parametrize("content", [b"not json{", b"\xff\xfe\x00", b"", b"[]", b'{"version": 2, "folders": {}}',
                                     b'{"version": 1, "folders": {"/x": {"digest": "nope"}}}',
                                     b'{"version": 1, "folders": []}', b"[" * 100000 + b"]" * 100000],
                         ids=["garbage", "binary", "empty", "a list", "another version", "a bad entry",
                              "folders not a map", "nested too deeply"])
def test_a_corrupt_file_is_ignored_with_one_warning_and_rewritten(tmp_path, cache_file, warnings, content):
    cache_file.parent.mkdir()
    cache_file.write_bytes(content)
    cache = _cache(cache_file, warnings)
    assert cache.lookup(tmp_path / "data", "f" * 64) is None
    cache.remember(tmp_path / "data", "f" * 64, DIGEST, trusted=True)
    cache.remember(tmp_path / "more", "f" * 64, DIGEST, trusted=True)
    assert len(warnings) == 1 and warnings[0].startswith("Ignoring the bundle cache "), warnings
    assert _cache(cache_file, warnings).lookup(tmp_path / "data", "f" * 64) == DIGEST
    assert len(warnings) == 1


def test_a_cache_that_cannot_be_read_or_written_costs_one_warning(tmp_path, cache_file, warnings):
    (cache_file / "in-the-way").mkdir(parents=True)  # a directory where the file should be
    cache = _cache(cache_file, warnings)
    cache.remember(tmp_path / "data", "f" * 64, DIGEST, trusted=True)
    _cache(cache_file, warnings).remember(tmp_path / "data", "f" * 64, DIGEST, trusted=True)
    assert len(warnings) == 1 and "bundle cache" in warnings[0]


WRITER = """
import sys
from kaos_cli.bundle_cache import DigestCache
cache = DigestCache(sys.argv[1])
for index in range(20):
    cache.remember(f"{sys.argv[2]}-{index}", "f" * 64, "d" * 64, trusted=True)
"""


def test_concurrent_writers_never_leave_a_torn_file_nor_lose_entries(tmp_path, cache_file):
    cache_file.parent.mkdir()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(cache_file), str(tmp_path / f"w{index}")])
               for index in range(4)]
    reads = 0
    while any(writer.poll() is None for writer in writers):
        try:
            text = cache_file.read_text()
        except FileNotFoundError:
            continue
        content = json.loads(text)  # a torn file would not parse
        assert content["version"] == 1 and len(content["folders"]) <= MAX_FOLDERS
        reads += 1
        time.sleep(0.001)
    assert [writer.wait(60) for writer in writers] == [0, 0, 0, 0]
    folders = json.loads(cache_file.read_text())["folders"]
    # the lock keeps every writer's entries (a newcomer saw 1 of 6 concurrent deploys lose its entry)
    assert len(folders) == 80, len(folders)
    assert sorted(path.name for path in cache_file.parent.iterdir()) == [CACHE_NAME, CACHE_NAME + ".lock"]
