"""Bundles: a directory's contents zipped deterministically, so identical folders give identical bytes
(and the backend's blob digest lets the CLI skip re-uploading them); bundles from the backend extracted without
letting a member escape the target directory.

What a bundle directory may hold (checked before anything is zipped or uploaded; a refusal is one `KaosError`
naming the path, as reachable from where the command ran):
- regular files and directories with UTF-8 names;
- symbolic links to a file or directory *inside* the bundle directory: stored as what they point to (a copy);
  a link to a missing file, to anything outside the bundle directory, or to a directory holding the link (a loop)
  is refused;
- no socket, named pipe (fifo) or device file;
- the shape the backend accepts (kaos_model.bundles): paths of at most 64 components and 4096 bytes, at most
  100,000 files and directories.
Left out without a word: `__pycache__/`, `*.pyc`, `.DS_Store`, and at the top level every name starting with a
dot and `__MACOSX` (the backend ignores those)."""
import errno
import os
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple

from kaos_model.bundles import MAX_BUNDLE_DEPTH, MAX_BUNDLE_MEMBERS, MAX_BUNDLE_PATH_BYTES

from kaos_cli.errors import KaosError

FIXED_DATE = (1980, 1, 1, 0, 0, 0)
SKIPPED_DIRS = {"__pycache__"}
SKIPPED_FILES = {".DS_Store"}
SKIPPED_SUFFIXES = (".pyc",)
MAX_SHOWN = 200  # characters of a path in a message; longer ones are shortened in the middle
SPECIAL_KINDS = ((stat.S_ISSOCK, "a socket"), (stat.S_ISFIFO, "a named pipe (fifo)"),
                 (stat.S_ISCHR, "a device file"), (stat.S_ISBLK, "a device file"))

Entry = Tuple[str, Path, os.stat_result]


def _skipped(name: str, top_level: bool) -> bool:
    if name in SKIPPED_DIRS or name in SKIPPED_FILES or name.endswith(SKIPPED_SUFFIXES):
        return True
    return top_level and (name.startswith(".") or name == "__MACOSX")


def shown_path(path) -> str:
    """A path for a one-line message: undecodable bytes as `\\xe9`, control characters escaped, a huge path
    shortened in the middle."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    text = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
    if len(text) > MAX_SHOWN:
        text = f"{text[:MAX_SHOWN // 2]}...{text[-MAX_SHOWN // 2:]}"
    return text


class _Walk:
    """One pass over a bundle directory that collects its entries and refuses what a bundle may not hold."""

    def __init__(self, src_dir):
        self.root = Path(src_dir)
        self.real_root = os.path.realpath(self.root)
        self.entries: List[Entry] = []

    def refuse(self, arc_name: str, problem: str) -> KaosError:
        return KaosError(f"{shown_path(os.path.normpath(self.root / arc_name))} {problem}")

    def run(self) -> List[Entry]:
        # (directory, its arc name prefix, the real paths of it and of every directory above it in the bundle)
        pending = [(self.root, "", (self.real_root,))]
        while pending:
            directory, prefix, chain = pending.pop()
            try:
                names = sorted(os.listdir(directory))
            except OSError as error:
                raise self.refuse(prefix or ".", f"cannot be read: {error.strerror}") from None
            subdirectories = []
            for name in names:
                if _skipped(name, top_level=not prefix):
                    continue
                arc_name = prefix + name
                path = directory / name
                info, real = self._resolve(path, arc_name, chain, os.path.join(chain[-1], name))
                self._check_shape(arc_name)
                if stat.S_ISDIR(info.st_mode):
                    self._add(arc_name + "/", path, info)
                    subdirectories.append((path, arc_name + "/", chain + (real,)))
                elif stat.S_ISREG(info.st_mode):
                    self._add(arc_name, path, info)
                else:
                    kind = next((kind for is_kind, kind in SPECIAL_KINDS if is_kind(info.st_mode)), "not a file")
                    raise self.refuse(arc_name, f"is {kind}: a bundle holds regular files and directories only; "
                                                "remove it or move it out of the bundle directory")
            pending.extend(reversed(subdirectories))  # depth first, in name order: the first problem is refused
        self.entries.sort(key=lambda entry: entry[0])
        return self.entries

    def _resolve(self, path: Path, arc_name: str, chain: Tuple[str, ...], lexical_real: str):
        """`(stat, real path)` of an entry, following a symbolic link when it stays inside the bundle."""
        try:
            arc_name.encode("utf-8")
        except UnicodeEncodeError:
            raise self.refuse(arc_name, "has a name that is not valid UTF-8: rename it (bundles carry UTF-8 "
                                        "names only)") from None
        try:
            info = os.lstat(path)
        except OSError as error:
            raise self.refuse(arc_name, f"cannot be read: {error.strerror}") from None
        if not stat.S_ISLNK(info.st_mode):
            return info, lexical_real
        target = shown_path(os.readlink(path))
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise self.refuse(arc_name, f"is a symbolic link to a missing file ({target}): replace it with the "
                                        "file or remove it") from None
        except OSError as error:
            problem = "a loop of symbolic links" if error.errno == errno.ELOOP else error.strerror
            raise self.refuse(arc_name, f"is a symbolic link that cannot be followed ({target}: {problem}): "
                                        "replace it with the file or remove it") from None
        real = os.path.realpath(path)
        if real != self.real_root and not real.startswith(self.real_root.rstrip(os.sep) + os.sep):
            raise self.refuse(arc_name, f"is a symbolic link to {target}, outside the bundle directory: copy "
                                        "what it points to into the bundle, or remove the link")
        if stat.S_ISDIR(info.st_mode) and real in chain:
            raise self.refuse(arc_name, f"is a symbolic link to {target}, a directory that holds the link: a "
                                        "bundle cannot hold a loop; remove the link")
        return info, real

    def _check_shape(self, arc_name: str) -> None:
        depth = arc_name.count("/") + 1
        if depth > MAX_BUNDLE_DEPTH:
            raise self.refuse(arc_name, f"is nested {depth} levels deep: a bundle holds paths of at most "
                                        f"{MAX_BUNDLE_DEPTH} levels")
        size = len(arc_name.encode("utf-8"))
        if size > MAX_BUNDLE_PATH_BYTES:
            raise self.refuse(arc_name, f"has a path of {size} bytes inside the bundle: a bundle holds paths of "
                                        f"at most {MAX_BUNDLE_PATH_BYTES} bytes")

    def _add(self, arc_name: str, path: Path, info: os.stat_result) -> None:
        self.entries.append((arc_name, path, info))
        if len(self.entries) > MAX_BUNDLE_MEMBERS:
            raise KaosError(f"{shown_path(self.root)} holds more than {MAX_BUNDLE_MEMBERS:,} files and "
                            "directories: a bundle holds at most that many")


def bundle_entries(src_dir) -> List[Entry]:
    """`(arc name, path, stat)` for every directory and file under `src_dir`, sorted by arc name (module
    docstring: what is left out, how links are stored); `KaosError` naming the first path a bundle may not hold."""
    return _Walk(src_dir).run()


def check_bundle_directory(src_dir) -> None:
    """Raise `KaosError` (one line naming the path) if `src_dir` holds anything a bundle may not: call it for
    every folder a command uploads before the first upload starts."""
    bundle_entries(src_dir)


def zip_directory(src_dir, dest_zip, label: str = "bundle", progress: bool = True,
                  entries: Optional[List[Entry]] = None) -> Path:
    """Zip the *contents* of `src_dir` (arc names relative to it) into `dest_zip`, deflated, with sorted
    entries, the 1980-01-01 timestamp and each entry's permission bits; a tqdm bar "Compressing <label>".
    `entries`: `bundle_entries(src_dir)` when the caller already walked it (the zip then holds exactly what that
    walk saw: its names, modes and sizes, with the files' bytes as read now)."""
    from tqdm import tqdm

    src = Path(src_dir)
    if not src.is_dir():
        raise NotADirectoryError(f"{src} is not a directory")
    dest = Path(dest_zip)
    if entries is None:
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
            try:
                source = open(path, "rb")
            except OSError as error:
                raise KaosError(f"{shown_path(path)} cannot be read: {error.strerror}") from None
            with source, archive.open(entry, "w") as target:
                for chunk in iter(lambda: source.read(1024 * 1024), b""):
                    target.write(chunk)
                    bar.update(len(chunk))
    return dest


class TemporaryBundle:
    """`with TemporaryBundle(dir, "data.zip", "data bundle") as zip_path:` — zipped into a temporary directory
    that is removed afterwards."""

    def __init__(self, src_dir, zip_name: str = "bundle.zip", label: str = "bundle", progress: bool = True,
                 entries: Optional[List[Entry]] = None):
        self.src_dir = src_dir
        self.zip_name = zip_name
        self.label = label
        self.progress = progress
        self.entries = entries
        self._tmp = None

    def __enter__(self) -> Path:
        self._tmp = tempfile.TemporaryDirectory(prefix="kaos-bundle-")
        try:
            return zip_directory(self.src_dir, Path(self._tmp.name) / self.zip_name, self.label, self.progress,
                                 self.entries)
        except BaseException:
            self._tmp.cleanup()
            raise

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
