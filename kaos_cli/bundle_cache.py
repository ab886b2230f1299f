"""The bundle digest cache: for each bundle folder, the sha256 of its last zip beside a fingerprint of the files
that zip was made from, so that a folder whose files did not change is offered to the backend by digest without
being compressed again (`kaos_cli.folder_upload`).

The file is `<state dir>/bundle-digests.json` (the project's `.kaos/`, mode 0600, replaced atomically)::

    {"version": 1,
     "folders": {"<real path of the folder>": {"fingerprint": "<sha256 hex>", "digest": "<sha256 hex>",
                                                "trusted": true, "used": <seconds since the epoch>}}}

It holds at most `MAX_FOLDERS` folders (the least recently used go first). Two CLIs writing at once neither tear it
nor lose each other's entries: each write takes a lock (`bundle-digests.json.lock`, flock), re-reads the file,
changes its one folder and replaces the file whole; a lock not had within 2 s is gone without (an entry lost
then only costs a compression next time). A file that cannot be read as above is ignored with one
warning and rewritten by the next upload. Nothing here is trusted blindly: a digest the backend does not store is
zipped and uploaded again by the caller.

The fingerprint is a sha256 over what the zip would hold (`kaos_cli.bundles.bundle_entries`, so links count as
what they point to and skipped files do not count): every directory's name and mode, every file's name, mode,
size, mtime_ns, ctime_ns, inode and device. The ctime and the inode catch an edit whose mtime was put back
(`touch -d`, `cp -p`) and a file replaced by another; any of them changing only costs a compression.

Racy entries (as git calls them): a file written in the same clock tick as the walk looked at it can change again
without changing its stat. So a fingerprint is trusted only when every file's mtime and ctime are at least
`RACY_SECONDS` older than the moment the walk started; otherwise the digest is kept with `"trusted": false` and
the next deploy compresses again (and trusts the folder once its files have aged)."""
import contextlib
import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional

from kaos_cli.bundles import Entry, shown_path
from kaos_cli.state import parse_json, state_dir, write_private

CACHE_NAME = "bundle-digests.json"
CACHE_VERSION = 1
MAX_FOLDERS = 100
LOCK_WAIT_SECONDS = 2.0
# File timestamps come from a coarse clock (up to a jiffy behind) and some file systems keep whole or even
# seconds (FAT: 2 s): three seconds covers both with a second to spare.
RACY_SECONDS = 3.0
# Part of every fingerprint: a change to how folders are zipped (kaos_cli.bundles) must change this tag.
ZIP_FORMAT = "kaos-bundle-zip-1"
_HEX64 = frozenset("0123456789abcdef")

_warned = set()  # the cache files this process has warned about: one warning each, at most


def cache_path() -> Path:
    return state_dir() / CACHE_NAME


def folder_key(folder) -> str:
    """The cache's key of a bundle folder: its real path (links and `..` resolved)."""
    return os.path.realpath(folder)


def fingerprint(entries: Iterable[Entry]) -> str:
    """sha256 hex of what a zip of these `bundle_entries` would be made from (module docstring)."""
    digest = hashlib.sha256(ZIP_FORMAT.encode())
    for name, _, info in entries:
        if name.endswith("/"):
            fields = [name, stat.S_IMODE(info.st_mode)]
        else:
            fields = [name, stat.S_IMODE(info.st_mode), info.st_size, info.st_mtime_ns, info.st_ctime_ns,
                      info.st_ino, info.st_dev]
        digest.update(json.dumps(fields, ensure_ascii=True).encode() + b"\n")
    return digest.hexdigest()


def is_racy(entries: Iterable[Entry], walk_started_ns: int, racy_seconds: float = None) -> bool:
    """True when a file's mtime or ctime is less than `racy_seconds` (default `RACY_SECONDS`) before
    `walk_started_ns` (nanoseconds since the epoch, taken before the walk), or after it."""
    window = int((RACY_SECONDS if racy_seconds is None else racy_seconds) * 1e9)
    limit = walk_started_ns - window
    return any(max(info.st_mtime_ns, info.st_ctime_ns) >= limit
               for name, _, info in entries if not name.endswith("/"))


def _is_hex64(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64


def _valid_entry(entry) -> bool:
    return (isinstance(entry, dict) and _is_hex64(entry.get("fingerprint")) and _is_hex64(entry.get("digest"))
            and isinstance(entry.get("trusted"), bool) and isinstance(entry.get("used"), (int, float))
            and not isinstance(entry.get("used"), bool))


@contextlib.contextmanager
def _locked(path: Path, wait: float = LOCK_WAIT_SECONDS):
    """Hold an exclusive flock on `<path>.lock` while the cache is re-read and replaced, so CLIs deploying at
    once keep each other's entries. Waits at most `wait` seconds; without the lock (no lock file possible,
    or another CLI holds it that long) it goes on unlocked: a lost entry only costs a compression."""
    import fcntl

    try:
        handle = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        yield
    finally:
        os.close(handle)  # releases the lock


class DigestCache:
    """The cache file at `path` (default: `cache_path()`); `warn(message)` is told, at most once per process and
    file, that the file was ignored or could not be written. No method raises for the file's sake."""

    def __init__(self, path=None, warn: Optional[Callable[[str], None]] = None):
        self.path = Path(path) if path else cache_path()
        self.warn = warn or (lambda message: None)
        self.folders = self._read(report=True)

    def lookup(self, folder, folder_fingerprint: str) -> Optional[str]:
        """The digest of `folder`'s last zip when it was made from files with this fingerprint and trusted."""
        entry = self.folders.get(folder_key(folder))
        if entry and entry["trusted"] and entry["fingerprint"] == folder_fingerprint:
            return entry["digest"]
        return None

    def remember(self, folder, folder_fingerprint: str, digest: str, trusted: bool) -> None:
        """Record (or refresh, on a hit) `folder`'s zip digest; keeps the `MAX_FOLDERS` most recently used."""
        with _locked(self.path):
            folders = self._read(report=False)
            folders[folder_key(folder)] = {"fingerprint": folder_fingerprint, "digest": digest,
                                           "trusted": bool(trusted), "used": time.time()}
            if len(folders) > MAX_FOLDERS:
                newest = sorted(folders.items(), key=lambda item: item[1]["used"], reverse=True)[:MAX_FOLDERS]
                folders = dict(newest)
            self.folders = folders
            text = json.dumps({"version": CACHE_VERSION, "folders": folders}, indent=1, sort_keys=True)
            try:
                write_private(self.path, text + "\n")
            except OSError as error:
                self._warn_once(f"Cannot save the bundle cache {self._shown()} "
                                f"({error.strerror or error}): unchanged bundles will be compressed again")

    def _read(self, report: bool) -> Dict[str, dict]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as error:
            problem = getattr(error, "strerror", None) or "not UTF-8 text"
            return self._ignored(report, problem)
        try:
            content = parse_json(text)
        except ValueError:
            return self._ignored(report, "not valid JSON")
        folders = content.get("folders") if isinstance(content, dict) else None
        if not isinstance(content, dict) or content.get("version") != CACHE_VERSION or not isinstance(folders, dict) \
                or not all(isinstance(key, str) and _valid_entry(entry) for key, entry in folders.items()):
            return self._ignored(report, f"not a version {CACHE_VERSION} bundle cache")
        return folders

    def _ignored(self, report: bool, problem: str) -> Dict[str, dict]:
        if report:
            self._warn_once(f"Ignoring the bundle cache {self._shown()} ({problem}): every bundle "
                                    "is compressed once more and the cache rewritten")
        return {}

    def _shown(self) -> str:
        from kaos_cli.local_platform import display_path

        return shown_path(display_path(self.path))

    def _warn_once(self, message: str) -> None:
        if str(self.path) not in _warned:
            _warned.add(str(self.path))
            self.warn(message)
