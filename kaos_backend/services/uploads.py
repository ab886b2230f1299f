"""Uploads: store the bytes once, validate them, record a Bundle row; a refused upload leaves nothing behind."""
import io
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, NamedTuple, Optional

from kaos_model.ids import bundle_id, clean_user
from kaos_model.wire import BundleUpload, ParamsUpload
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kaos_backend import bundles, hyperparams, manifests
from kaos_backend.config import Config
from kaos_backend.db import Database
from kaos_backend.errors import BadRequest, BlobNotFound, InvalidHyperparams
from kaos_backend.models import MAX_USER, Blob, Bundle
from kaos_backend.resources import Resources, check_fits_one, validate_resources
from kaos_backend.services.blobs import BlobService
from kaos_backend.services.workspaces import find_workspace
from kaos_backend.storage import BlobInfo, BlobStore, check_digest

PARAMS_NULL = "params.null"
_RECORD_ATTEMPTS = 3


class UploadBody(NamedTuple):
    """What a request carried: a stream of bytes, or the digest of a blob the backend already stores."""
    stream: Optional[BinaryIO] = None
    digest: Optional[str] = None


class Checked(NamedTuple):
    glob_name: str
    root_name: str
    meta: Dict[str, Any]
    hash5: Optional[str] = None  # the hash in `glob_name` when it is not the blob's hash5 (manifests)


class UploadService:
    def __init__(self, db: Database, store: BlobStore, config: Config):
        self.db = db
        self.store = store
        self.config = config
        self.blobs = BlobService(db, store)

    def warned(self, answer: Dict[str, Any], cpu: Any = None, memory: Any = None, gpu: Any = None) -> Dict[str, Any]:
        """An upload's answer, with a `warning` when the resources it asked for will not be enforced."""
        warning = self.limits_warning(cpu, memory, gpu)
        return {**answer, "warning": warning} if warning else answer

    def limits_warning(self, cpu: Any = None, memory: Any = None, gpu: Any = None) -> Optional[str]:
        """One line for the user when the configured executor would not enforce the requested resources."""
        from kaos_backend.executors.registry import ExecutorNotAvailable, executor_class
        resources = self.resources(cpu, memory, gpu)
        try:
            kind = executor_class(self.config.executor)
        except ExecutorNotAvailable:
            return None
        return "; ".join(kind.limits_warnings(self.config, resources.cpu, resources.memory, resources.gpu)) or None

    def resources(self, cpu: Any = None, memory: Any = None, gpu: Any = None) -> Resources:
        """The checked request: against KAOS_MAX_* where set, else what the executor's infrastructure can give
        one workload, read live (Kubernetes: its largest node), asked only when something is requested."""
        maxima = {"max_cpu": self.config.max_cpu, "max_memory": self.config.max_memory, "max_gpu": self.config.max_gpu}
        live = None
        if any(value is None for value in maxima.values()) and any(
                value is not None and str(value).strip() not in ("", "None", "0") for value in (cpu, memory, gpu)):
            live = self._capacity()
            if live is not None:
                for name, value in zip(("max_cpu", "max_memory", "max_gpu"), live):
                    if maxima[name] is None:
                        maxima[name] = value
        request = validate_resources(cpu, memory, gpu, **maxima)
        if live is not None:
            check_fits_one(request, live.nodes)  # the largest of each on its own is not one node's
        return request

    def _capacity(self):
        from kaos_backend.executors.registry import ExecutorNotAvailable, executor_class
        try:
            return executor_class(self.config.executor).capacity(self.config)
        except ExecutorNotAvailable:
            return None

    def features(self, workspace: str, body: UploadBody, user: str = None, cpu: Any = None, memory: Any = None,
                 gpu: Any = None) -> Dict[str, str]:
        meta = {"resources": self.resources(cpu, memory, gpu).to_dict()}
        bundle = self.record(workspace, "features", body, user, meta, self._check_zip("features"))
        return BundleUpload(glob_name=bundle.glob_name).to_dict()

    def manifest(self, workspace: str, body: UploadBody, user: str = None, cpu: Any = None, memory: Any = None,
                 gpu: Any = None) -> Dict[str, str]:
        meta = {"resources": self.resources(cpu, memory, gpu).to_dict()}
        bundle = self.record(workspace, "manifest", body, user, meta, _check_manifest)
        return BundleUpload(glob_name=bundle.glob_name).to_dict()

    def params(self, workspace: str, body: UploadBody, user: str = None, parallelism: Any = None, cpu: Any = None,
               memory: Any = None, gpu: Any = None) -> Dict[str, Any]:
        meta = {"resources": self.resources(cpu, memory, gpu).to_dict(),
                "parallelism": hyperparams.parse_parallelism(parallelism)}
        bundle = self.record(workspace, "params", body, user, meta, _check_params)
        return ParamsUpload(glob_name=bundle.glob_name, params=bundle.meta["grid"]).to_dict()

    def notebook_data(self, workspace: str, body: UploadBody, user: str = None) -> None:
        self.record(workspace, "data-notebook", body, user, {}, self._check_zip("data-notebook"))

    def source(self, kind: str, workspace: str, body: UploadBody, user: str = None, cpu: Any = None,
               memory: Any = None, gpu: Any = None) -> Bundle:
        """A source bundle (`source-train`, `source-serve`, `source-notebook`), validated per reference §6.14."""
        if kind not in bundles.SOURCE_KINDS:
            raise ValueError(f"not a source bundle kind: {kind}")
        meta = {"resources": self.resources(cpu, memory, gpu).to_dict()}
        return self.record(workspace, kind, body, user, meta, self._check_zip(kind))

    def record(self, workspace: str, kind: str, body: UploadBody, user: Optional[str], meta: Dict[str, Any],
               check: Callable[[Path, BlobInfo], Checked]) -> Bundle:
        """Store (or find) the bytes, `check` them, and record the bundle; identical bytes → the existing row."""
        with self.db.read_scope() as session:
            find_workspace(session, workspace)  # 404 before reading a byte of the body
        staged, path, info = self._receive(body)
        try:
            checked = (None if staged else self._checked_before(kind, info)) or check(path, info)
        except BaseException:
            if staged:
                staged.discard()
            raise
        published = False
        try:
            with self.store.lock(exclusive=False):
                if staged:
                    staged.publish()
                    published = True
                bundle = self._insert(workspace, kind, info, clean_user(user)[:MAX_USER], checked._replace(
                    meta={**meta, **checked.meta}))
        except BaseException:
            if published:
                self.blobs.drop_if_unreferenced(info.digest)
            elif staged:
                staged.discard()
            raise
        if published and bundle.blob_digest != info.digest:
            self.blobs.drop_if_unreferenced(info.digest)
        return bundle

    def _receive(self, body: UploadBody):
        if body.stream is None:
            if not body.digest:
                raise BadRequest("Nothing uploaded: send the bytes as the body, as the multipart part 'data', "
                                 "or name a stored blob with ?digest=")
            digest = check_digest(body.digest)
            with self.db.read_scope() as session:
                blob = session.get(Blob, digest)
            if blob is None or not self.store.exists(digest):
                raise BlobNotFound.named(digest)
            return None, self.store.path(digest), BlobInfo(blob.digest, blob.hash5, blob.size)
        staged = self.store.stage(body.stream, self.config.max_upload_bytes)
        if body.digest and body.digest != staged.info.digest:
            staged.discard()
            raise BadRequest(f"The uploaded bytes have the digest {staged.info.digest}, not {body.digest}")
        return staged, staged.temp_path, staged.info

    def _checked_before(self, kind: str, info: BlobInfo) -> Optional[Checked]:
        """A zip bundle sent by digest that a bundle row of the same kind already records: that check's result, so
        its bytes are not read again (an unchanged folder re-deployed); None when they must be checked."""
        if kind not in bundles.DATA_KINDS + bundles.SOURCE_KINDS:
            return None
        with self.db.read_scope() as session:
            earlier = session.scalars(select(Bundle).where(Bundle.kind == kind, Bundle.blob_digest == info.digest)
                                      .limit(1)).first()
        meta = (earlier.meta if earlier else None) or {}
        files, size = meta.get("files"), meta.get("uncompressed_size")
        if not isinstance(files, int) or not isinstance(size, int) or size > self.config.max_bundle_bytes:
            return None  # recorded before these were kept, or over today's limit: check the bytes
        return Checked(earlier.glob_name, earlier.root_name, {"files": files, "uncompressed_size": size})

    def _insert(self, workspace: str, kind: str, info: BlobInfo, user: str, checked: Checked) -> Bundle:
        for attempt in range(_RECORD_ATTEMPTS):
            try:
                with self.db.session_scope() as session:
                    workspace_row = find_workspace(session, workspace)
                    bundle = session.scalar(select(Bundle).where(
                        Bundle.workspace_id == workspace_row.id, Bundle.kind == kind,
                        Bundle.glob_name == checked.glob_name))
                    if bundle is None:
                        if session.get(Blob, info.digest) is None:
                            session.add(Blob(digest=info.digest, hash5=info.hash5, size=info.size))
                            session.flush()
                        bundle = Bundle(workspace_id=workspace_row.id, kind=kind, glob_name=checked.glob_name,
                                        root_name=checked.root_name, hash5=checked.hash5 or info.hash5,
                                        blob_digest=info.digest, user=user, meta=checked.meta)
                        session.add(bundle)
                    elif bundle.blob_digest == info.digest or checked.glob_name == PARAMS_NULL:
                        bundle.meta = checked.meta  # the latest request's resources and parallelism
                    else:
                        raise BadRequest(f"Bundle {checked.glob_name} already exists in workspace {workspace} "
                                         "with other content (a 5-character hash collision); change the bundle "
                                         "slightly and upload it again")
                    session.flush()
                return bundle
            except IntegrityError:  # a concurrent upload recorded the same blob or bundle first: look again
                if attempt == _RECORD_ATTEMPTS - 1:
                    raise

    def _check_zip(self, kind: str) -> Callable[[Path, BlobInfo], Checked]:
        def check(path: Path, info: BlobInfo) -> Checked:
            layout = bundles.inspect_bundle(path, kind, self.config.max_bundle_bytes)
            return Checked(bundle_id(layout.root_name, info.hash5), layout.root_name,
                           {"files": layout.file_count, "uncompressed_size": layout.total_size})
        return check


def _check_manifest(path: Path, info: BlobInfo) -> Checked:
    entries = manifests.read_manifest(path)
    # The manifest's id is the SHA-256 prefix (reference §6.2); its bundle's hash5 (the data part of the output
    # branch and model ids) is that same id, as the hash5 of a features bundle is the one in its glob.
    manifest_hash = info.digest[:5]
    return Checked(f"manifest:{manifest_hash}", "manifest", {"entries": len(entries)}, manifest_hash)


def _check_params(path: Path, info: BlobInfo) -> Checked:
    if info.size > hyperparams.MAX_PARAMS_BYTES:
        raise InvalidHyperparams(f"Hyperparameters file is too large ({info.size} bytes, "
                                 f"the limit is {hyperparams.MAX_PARAMS_BYTES} bytes)")
    params = hyperparams.parse_params(Path(path).read_bytes())
    glob_name = info.hash5 if params else PARAMS_NULL
    return Checked(glob_name, glob_name, {"params": params, "grid": hyperparams.expand_grid(params)})


def body_from_bytes(data: bytes) -> UploadBody:
    """An UploadBody over bytes already in memory (tests, small internal uploads)."""
    return UploadBody(stream=io.BytesIO(data))
