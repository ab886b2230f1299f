"""Bundles: a directory's contents zipped deterministically, so identical folders give identical bytes
(and the backend's blob digest lets the CLI skip re-uploading them); bundles from the backend extracted without
letting a member escape the target directory."""
import os
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import List, Tuple

FIXED_DATE = (1980, 1, 1, 0, 0, 0)
SKIPPED_DIRS = {"__pycache__"}
SKIPPED_FILES = {".DS_Store"}
SKIPPED_SUFFIXES = (".pyc",)


def _skipped_file(name: str) -> bool:
    return name in SKIPPED_FILES or name.endswith(SKIPPED_SUFFIXES)


def bundle_entries(src_dir) -> List[Tuple[str, Path, os.stat_result]]:
    """`(arc name, path, stat)` for every directory and file under `src_dir`, sorted by arc name.

    Symbolic links are followed (their targets are bundled); a directory reached twice is bundled once."""
    root = Path(src_dir)
    entries = []
    seen_dirs = set()
    for current, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(current)
        if real in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs[:] = sorted(name for name in dirs if name not in SKIPPED_DIRS)
        current_path = Path(current)
        relative = current_path.relative_to(root).as_posix()
        if relative != ".":
            entries.append((relative + "/", current_path, current_path.stat()))
        for name in sorted(files):
            if _skipped_file(name):
                continue
            path = current_path / name
            try:
                info = path.stat()
            except FileNotFoundError:  # a dangling link
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            entries.append((path.relative_to(root).as_posix(), path, info))
    entries.sort(key=lambda entry: entry[0])
    return entries


def zip_directory(src_dir, dest_zip, label: str = "bundle", progress: bool = True) -> Path:
    """Zip the *contents* of `src_dir` (arc names relative to it) into `dest_zip`, deflated, with sorted
    entries, the 1980-01-01 timestamp and each entry's permission bits; a tqdm bar "Compressing <label>"."""
    from tqdm import tqdm

    src = Path(src_dir)
    if not src.is_dir():
        raise NotADirectoryError(f"{src} is not a directory")
    dest = Path(dest_zip)
    entries = bundle_entries(src)
    total = sum(info.st_size for name, _, info in entries if not name.endswith("/"))
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as archive, \
            tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"Compressing {label}",
                 disable=not progress) as bar:
        for name, path, info in entries:
            entry = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            entry.create_system = 3  # unix, so external_attr carries the mode
            if name.endswith("/"):
                entry.external_attr = ((stat.S_IFDIR | stat.S_IMODE(info.st_mode)) << 16) | 0x10
                entry.compress_type = zipfile.ZIP_STORED
                archive.writestr(entry, b"")
                continue
            entry.external_attr = (stat.S_IFREG | stat.S_IMODE(info.st_mode)) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.file_size = info.st_size
            with open(path, "rb") as source, archive.open(entry, "w") as target:
                for chunk in iter(lambda: source.read(1024 * 1024), b""):
                    target.write(chunk)
                    bar.update(len(chunk))
    return dest


class TemporaryBundle:
    """`with TemporaryBundle(dir, "data.zip", "data bundle") as zip_path:` — zipped into a temporary directory
    that is removed afterwards."""

    def __init__(self, src_dir, zip_name: str = "bundle.zip", label: str = "bundle", progress: bool = True):
        self.src_dir = src_dir
        self.zip_name = zip_name
        self.label = label
        self.progress = progress
        self._tmp = None

    def __enter__(self) -> Path:
        self._tmp = tempfile.TemporaryDirectory(prefix="kaos-bundle-")
        return zip_directory(self.src_dir, Path(self._tmp.name) / self.zip_name, self.label, self.progress)

    def __exit__(self, *exc_info) -> None:
        self._tmp.cleanup()


class UnsafeArchiveError(ValueError):
    """A zip member that would be written outside the extraction directory."""

    def __init__(self, member: str):
        super().__init__(f"unsafe path {member!r}")
        self.member = member


def unsafe_member(name: str) -> bool:
    """Would this zip member land outside the directory it is extracted into (absolute, a drive, `..`)?"""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return True
    return any(part == ".." for part in name.replace("\\", "/").split("/"))


def extract_zip(zip_path, target_dir, label: str = "bundle", progress: bool = True) -> Path:
    """Extract `zip_path` into `target_dir` (created), with a tqdm bar "Extracting <label>" and each file's
    permission bits. Every member is checked first: a member that would land outside `target_dir` refuses the
    whole archive (`UnsafeArchiveError`) before anything is written; a damaged archive raises `zipfile.BadZipFile`."""
    from tqdm import tqdm

    target = Path(target_dir)
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
        root = target.resolve()
        for member in members:
            destination = (root / member.filename).resolve()
            if unsafe_member(member.filename) or destination != root and root not in destination.parents:
                raise UnsafeArchiveError(member.filename)
        target.mkdir(parents=True, exist_ok=True)
        total = sum(member.file_size for member in members if not member.is_dir())
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"Extracting {label}",
                  disable=not progress) as bar:
            for member in members:
                destination = target / member.filename
                if member.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(destination, "wb") as copy:
                    for chunk in iter(lambda: source.read(1024 * 1024), b""):
                        copy.write(chunk)
                        bar.update(len(chunk))
                mode = stat.S_IMODE(member.external_attr >> 16) if member.create_system == 3 else 0
                if mode:
                    os.chmod(destination, mode | stat.S_IRUSR | stat.S_IWUSR)
    return target
