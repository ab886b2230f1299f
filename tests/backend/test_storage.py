import hashlib
import io
import threading

import pytest

from kaos_model.ids import hash5
from kaos_backend.errors import BadRequest, PayloadTooLarge
from kaos_backend.storage import BlobStore


class SlowStream(io.RawIOBase):
    """A stream that lets a test look at the store while a blob is half-written."""

    def __init__(self, chunks, halfway: threading.Event, resume: threading.Event):
        self.chunks, self.halfway, self.resume = list(chunks), halfway, resume

    def read(self, size=-1):
        if not self.chunks:
            return b""
        if len(self.chunks) == 1:
            self.halfway.set()
            self.resume.wait(5)
        return self.chunks.pop(0)


def test_put_and_read(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    data = b"hello kaos" * 1000
    info = store.put_stream(io.BytesIO(data))
    digest = hashlib.sha256(data).hexdigest()
    assert info == (digest, hash5(data), len(data))
    assert store.path(digest) == tmp_path / "blobs" / digest[:2] / digest
    assert store.path(digest).read_bytes() == data
    assert store.exists(digest) and list(store.digests()) == [digest]


def test_same_bytes_stored_once(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    first = store.put_stream(io.BytesIO(b"same"))
    inode = store.path(first.digest).stat().st_ino
    assert store.put_stream(io.BytesIO(b"same")) == first
    assert store.path(first.digest).stat().st_ino == inode
    assert list(store.digests()) == [first.digest]
    assert not any(store.temp_dir.iterdir())


def test_too_large_leaves_nothing(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(PayloadTooLarge):
        store.put_stream(io.BytesIO(b"x" * 101), max_bytes=100)
    assert list(store.digests()) == [] and not any(store.temp_dir.iterdir())
    assert store.put_stream(io.BytesIO(b"x" * 100), max_bytes=100).size == 100


def test_no_half_written_blob_is_visible(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    halfway, resume = threading.Event(), threading.Event()
    result = {}
    writer = threading.Thread(target=lambda: result.update(info=store.put_stream(
        SlowStream([b"a" * 1000, b"b" * 1000], halfway, resume))))
    writer.start()
    assert halfway.wait(5)
    assert list(store.digests()) == []  # only a temporary file exists while writing
    resume.set()
    writer.join(5)
    assert list(store.digests()) == [result["info"].digest]


def test_delete_and_digest_checks(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    info = store.put_stream(io.BytesIO(b"bye"))
    store.delete(info.digest)
    store.delete(info.digest)  # gone is fine
    assert not store.exists(info.digest)
    for bad in ("../../etc/passwd", "ABC", "0" * 63, "g" * 64):
        with pytest.raises(BadRequest, match="Invalid digest"):
            store.path(bad)


def test_staged_blob_can_be_discarded(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    staged = store.stage(io.BytesIO(b"maybe"))
    assert staged.temp_path.exists() and not store.exists(staged.info.digest)
    staged.discard()
    assert not staged.temp_path.exists() and list(store.digests()) == []


def test_clear_temp(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    (store.temp_dir / "upload-crashed").write_bytes(b"half")
    kept = store.put_stream(io.BytesIO(b"whole"))
    store.clear_temp()
    assert not any(store.temp_dir.iterdir()) and store.exists(kept.digest)


def test_clear_temp_leaves_the_uploads_of_a_running_replica_alone(tmp_path):
    """Another backend replica on the same data directory starts while this one receives an upload."""
    running = BlobStore(tmp_path / "blobs")
    staged = running.stage(io.BytesIO(b"being checked"))
    (running.temp_dir / "upload-crashed").write_bytes(b"half")
    BlobStore(tmp_path / "blobs").clear_temp()
    assert [entry.name for entry in running.temp_dir.iterdir()] == [staged.temp_path.name]
    staged.publish()
    assert running.exists(staged.info.digest) and not any(running.temp_dir.iterdir())
    discarded = running.stage(io.BytesIO(b"refused"))
    discarded.discard()
    assert staged.lock_fd is None and discarded.lock_fd is None
