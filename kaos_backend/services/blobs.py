"""Blob rows and files together: look-ups for the CLI, and deleting blobs that no bundle references."""
import os
from typing import Dict, Iterable, List, Optional

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from kaos_backend.db import Database
from kaos_backend.errors import BlobNotFound
from kaos_backend.layout import DataLayout, Trash
from kaos_backend.models import Blob, Bundle
from kaos_backend.storage import BlobStore, check_digest


class BlobService:
    def __init__(self, db: Database, store: BlobStore):
        self.db = db
        self.store = store

    def info(self, digest: str) -> Dict[str, object]:
        check_digest(digest)
        with self.db.read_scope() as session:
            blob = session.get(Blob, digest)
        if blob is None or not self.store.exists(digest):
            raise BlobNotFound.named(digest)
        return {"digest": blob.digest, "size": blob.size}

    def drop_if_unreferenced(self, digest: str) -> None:
        """After a failed upload: delete the file unless a row records it (under the store's exclusive lock)."""
        with self.store.lock(exclusive=True):
            with self.db.read_scope() as session:
                recorded = session.get(Blob, digest) is not None
            if not recorded:
                self.store.delete(digest)


def delete_unreferenced_rows(session: Session, digests: Optional[Iterable[str]] = None) -> List[str]:
    """Delete the Blob rows no bundle references (among `digests`, or all); returns their digests.

    Call it with the store's exclusive lock held, and delete the files once the transaction has committed.
    """
    unreferenced = select(Blob.digest).where(~exists().where(Bundle.blob_digest == Blob.digest))
    if digests is not None:
        unreferenced = unreferenced.where(Blob.digest.in_(list(digests)))
    orphans = list(session.scalars(unreferenced))
    for start in range(0, len(orphans), 500):
        session.execute(delete(Blob).where(Blob.digest.in_(orphans[start:start + 500])))
    return orphans


def remove_blob_files(store: BlobStore, layout: Optional[DataLayout], digests: Iterable[str],
                      trash: Optional[Trash]) -> List[str]:
    """Delete the files of these blobs and what was made of them: the bundles extracted from them, the files a
    manifest's ingestion downloaded. Call it once the transaction that deleted their rows has committed, with the
    store's exclusive lock still held (no upload may reference them meanwhile). Returns the digests whose
    extracted bundle is being unpacked right now and was left in place."""
    left = []
    for digest in digests:
        store.delete(digest)
        try:  # its prefix directory too once empty: no upload publishes while the exclusive lock is held
            os.rmdir(store.path(digest).parent)
        except OSError:
            pass
        if layout is not None:
            layout.remove_ingested(digest, trash)
            if not layout.remove_extracted(digest, trash):
                left.append(digest)
    return left
