"""Content-addressed blob store: `<root>/<sha256[:2]>/<sha256>`, written atomically, each content once."""
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple, Optional

from kaos_model.ids import hash5_of_digest

from kaos_backend.errors import BadRequest, PayloadTooLarge

DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024


class BlobInfo(NamedTuple):
    digest: str  # sha256 hex
    hash5: str   # the original's display hash, from the SHA-512
    size: int


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise BadRequest(f"Invalid digest {digest!r}: expected 64 lowercase hex characters (sha256)")
    return digest


class StagedBlob:
    """Uploaded bytes in a temporary file of the store, hashed, not yet visible under their digest. The file is
    locked (`lock_fd`, an flock) until it is published or discarded: another backend replica starting meanwhile
    leaves it alone (BlobStore.clear_temp)."""

    def __init__(self, store: "BlobStore", temp_path: Path, info: BlobInfo, lock_fd: Optional[int] = None):
        self.store = store
        self.temp_path = temp_path
        self.info = info
        self.lock_fd = lock_fd

    def publish(self) -> BlobInfo:
        """Make the bytes visible under their digest (atomic rename); the same content is kept only once."""
        target = self.store.path(self.info.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            self.discard()
        else:
            os.replace(self.temp_path, target)
            self._unlock()
        return self.info

    def discard(self) -> None:
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass
        self._unlock()

    def _unlock(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.temp_dir = self.root / ".tmp"
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / ".lock"

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def digests(self) -> Iterator[str]:
        for entry in sorted(self.root.glob("??/*")):
            if DIGEST_RE.match(entry.name):
                yield entry.name

    def stage(self, stream: BinaryIO, max_bytes: Optional[int] = None) -> StagedBlob:
        """Copy `stream` into a temporary file while hashing it; above `max_bytes` → PayloadTooLarge."""
        sha256, sha512, size = hashlib.sha256(), hashlib.sha512(), 0
        fd, temp_name = tempfile.mkstemp(dir=self.temp_dir, prefix="upload-")
        lock_fd = os.dup(fd)  # outlives the writing: the file is this upload's until published or discarded
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            with os.fdopen(fd, "wb") as temp:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise PayloadTooLarge(f"Upload is larger than the limit of {_mb(max_bytes)}")
                    sha256.update(chunk)
                    sha512.update(chunk)
                    temp.write(chunk)
                temp.flush()
                os.fsync(temp.fileno())
        except BaseException:
            os.unlink(temp_name)
            os.close(lock_fd)
            raise
        info = BlobInfo(sha256.hexdigest(), hash5_of_digest(sha512.hexdigest()), size)
        return StagedBlob(self, Path(temp_name), info, lock_fd)

    def put_stream(self, stream: BinaryIO, max_bytes: Optional[int] = None) -> BlobInfo:
        return self.stage(stream, max_bytes).publish()

    def clear_temp(self) -> None:
        """Remove uploads a crash left half-written (at a backend's start): those no upload holds locked, as
        the uploads of another replica on the same data directory do."""
        for entry in self.temp_dir.iterdir():
            try:
                fd = os.open(entry, os.O_RDONLY)
            except (FileNotFoundError, IsADirectoryError):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                entry.unlink()
            except (BlockingIOError, FileNotFoundError):
                pass
            finally:
                os.close(fd)

    def wipe(self) -> None:
        """Delete every blob (and stray temporary files)."""
        for entry in self.root.iterdir():
            if entry.is_dir() and entry != self.temp_dir:
                shutil.rmtree(entry, ignore_errors=True)

    @contextmanager
    def lock(self, exclusive: bool) -> Iterator[None]:
        """A lock across threads and processes: publishing uploads share it, deleting unreferenced blobs
        takes it alone, so a blob that an upload is about to record is never deleted under it."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"
