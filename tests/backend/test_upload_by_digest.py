"""An upload by digest of a zip bundle already recorded as that kind reuses the earlier check: an unchanged folder
re-deployed costs the backend no read of its bytes (issue 8, item 7). Anything else is checked as before."""
import pytest
from sqlalchemy import select

from kaos_backend import bundles
from kaos_backend.errors import InvalidBundle
from kaos_backend.models import Bundle
from kaos_backend.services.uploads import UploadBody, body_from_bytes
from tests.backend.helpers import features_zip, source_zip


@pytest.fixture
def inspections(monkeypatch):
    """The kinds `bundles.inspect_bundle` was called for, in order (it still runs)."""
    calls = []
    inspect = bundles.inspect_bundle

    def counted(path, kind, *args, **kwargs):
        calls.append(kind)
        return inspect(path, kind, *args, **kwargs)

    monkeypatch.setattr(bundles, "inspect_bundle", counted)
    return calls


def _only_digest(services):
    digests = list(services.store.digests())
    assert len(digests) == 1
    return digests[0]


def test_a_digest_upload_of_a_recorded_bundle_is_not_inspected_again(services, inspections):
    for name in ("ws", "other"):
        services.workspaces.create(name)
    first = services.uploads.features("ws", body_from_bytes(features_zip()))
    assert inspections == ["features"]
    digest = _only_digest(services)
    assert services.uploads.features("ws", UploadBody(digest=digest)) == first
    assert services.uploads.features("other", UploadBody(digest=digest)) == first
    assert inspections == ["features"]
    with services.db.read_scope() as session:
        rows = session.scalars(select(Bundle).where(Bundle.blob_digest == digest)).all()
    assert len(rows) == 2 and {row.meta["files"] for row in rows} == {2}
    assert len({row.meta["uncompressed_size"] for row in rows}) == 1


def test_the_bytes_are_checked_for_a_kind_they_were_not_recorded_as(services, inspections):
    services.workspaces.create("ws")
    services.uploads.features("ws", body_from_bytes(features_zip()))
    with pytest.raises(InvalidBundle):
        services.uploads.source("source-train", "ws", UploadBody(digest=_only_digest(services)))
    assert inspections == ["features", "source-train"]


def test_a_bytes_upload_is_always_inspected(services, inspections):
    services.workspaces.create("ws")
    for _ in range(2):
        services.uploads.source("source-train", "ws", body_from_bytes(source_zip()))
    assert inspections == ["source-train", "source-train"]


def test_a_recorded_bundle_over_todays_limit_is_checked_again(services, inspections):
    services.workspaces.create("ws")
    services.uploads.features("ws", body_from_bytes(features_zip()))
    with services.db.session_scope() as session:
        row = session.scalars(select(Bundle)).one()
        row.meta = {**row.meta, "uncompressed_size": services.config.max_bundle_bytes + 1}
    services.uploads.features("ws", UploadBody(digest=_only_digest(services)))
    assert inspections == ["features", "features"]
