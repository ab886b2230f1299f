"""Notebooks as the API sees them (reference §4.11, §5.6, §6.12, with §11's bugs fixed): deploy (record the
desired notebook and its token), list, logs, kill.

- One notebook per workspace and user, `notebook-<ws>-<user>`, named after the caller (1.x named it after the
  workspace's creator). A second deploy while one is building, starting or running is 409 NOTEBOOK_EXISTS; one
  that stopped itself (culled when idle: PIPELINE_STANDBY) or gave up (PIPELINE_FAILURE) is replaced.
- The source is the uploaded bundle (Dockerfile + model/), else the default one shipped in templates/notebook
  (templates/notebook-gpu when GPUs are asked for, as 1.x chose).
- It reads, read-only: the workspace's notebook data bundles (`POST /data/<ws>/notebook`, 1.x's data-notebook
  repo), the data bundles named by `data` (`features:9fd9d`, `manifest:1a2b3`), and with `model` that model's
  files and the exact data its training read.
- A random token per notebook (1.x used the user name): answered once by the deploy; the database keeps its
  SHA-256 only; the plaintext is in the notebook's secret file (mode 0600, `<data>/notebooks/<name>/token-<id>`)
  for the scheduler to hand to Jupyter, and is removed with the notebook.
"""
import hashlib
import io
import os
import secrets
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from kaos_model import PipelineState
from kaos_model.ids import clean_user, notebook_name
from kaos_model.wire import BundleUpload, ServeInfo
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kaos_backend.db import Database
from kaos_backend.errors import NotebookExists, NotFound, PipelineNotFound
from kaos_backend.executors import log_of
from kaos_backend.executors.base import notebook_log_name
from kaos_backend.layout import DataLayout
from kaos_backend.models import MAX_USER, Bundle, Job, Notebook
from kaos_backend.services.descriptors import bundle_descriptor, image_name
from kaos_backend.services.jobs import local_text
from kaos_backend.services.kill_wait import KILL_WAIT_SECONDS, KillPending, wait_for_kill
from kaos_backend.services.paging import Cursor, moment_key, newest_first_page, split_page
from kaos_backend.services.train import find_model, request_build
from kaos_backend.services.uploads import UploadBody, UploadService, body_from_bytes
from kaos_backend.services.workspaces import find_workspace
from kaos_backend.wakeup import socket_name, wake

BUILD_KIND = "build-notebook"
DEFAULT_TEMPLATE, GPU_TEMPLATE = "notebook", "notebook-gpu"
SOURCE_KIND = "source-notebook"
DATA_KINDS = ("features", "manifest", "data-notebook")
REPLACEABLE = (PipelineState.PIPELINE_STANDBY.value, PipelineState.PIPELINE_FAILURE.value)
FINGERPRINT_HEX = 16
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_file(layout: DataLayout, name: str, sha256: str) -> Path:
    """The secret file of the notebook `name` whose token hashes to `sha256` (one per deploy: two racing deploys
    never overwrite each other's)."""
    return layout.notebook_dir(name) / f"token-{sha256[:FINGERPRINT_HEX]}"


def read_token(layout: DataLayout, name: str, sha256: str) -> Optional[str]:
    """The notebook's token from its secret file, when it is there and hashes to `sha256`; else None."""
    try:
        token = token_file(layout, name, sha256).read_text().strip()
    except OSError:
        return None
    return token if token_sha256(token) == sha256 else None


def _write_token(layout: DataLayout, name: str, token: str) -> None:
    path = token_file(layout, name, token_sha256(token))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(token)


def default_template(gpu: Any = None) -> str:
    """The template a deploy without a source bundle runs: `notebook`, or with GPUs `notebook-gpu` (as 1.x did)."""
    try:
        gpus = int(gpu or 0)
    except (TypeError, ValueError):
        gpus = 0  # refused by the resource checks before it is used
    return GPU_TEMPLATE if gpus > 0 else DEFAULT_TEMPLATE


def default_bundle_zip(template: str = None) -> bytes:
    """A default notebook bundle (templates/<template>/base: Dockerfile + model/ with jupyterlab; DEFAULT_TEMPLATE
    when None) as a zip whose bytes depend on its files only, so every default deploy is one bundle (and image)."""
    from kaos_templates import TEMPLATES_DIR
    base = Path(TEMPLATES_DIR) / (template or DEFAULT_TEMPLATE) / "base"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(base.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                entry = zipfile.ZipInfo(f"base/{path.relative_to(base).as_posix()}", ZIP_TIME)
                entry.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
                entry.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(entry, path.read_bytes())
    return buffer.getvalue()


def find_notebook(session, workspace: Optional[str], name: str) -> Notebook:
    """The notebook `name` (of `workspace` when given); PipelineNotFound for anything else, or one being killed."""
    workspace_row = find_workspace(session, workspace) if workspace is not None else None  # 404 for it first
    notebook = session.get(Notebook, name) if isinstance(name, str) and name.startswith("notebook-") else None
    if notebook is not None and workspace_row is not None and notebook.workspace_id != workspace_row.id:
        notebook = None
    if notebook is None or notebook.desired == "kill":
        raise PipelineNotFound(f"Pipeline {name} not found")
    return notebook


def notebook_ended(desired: Optional[str], state: Optional[str]) -> bool:
    """Whether a follow of a notebook's log ends: its row is gone (`desired` None), it is being killed, or its
    server stopped for good (culled when idle, shut down, or given up: REPLACEABLE)."""
    return desired is None or desired == "kill" or state in REPLACEABLE


def _data_ref(ref: str) -> str:
    return (ref or "").strip().lstrip("/")


class NotebookService:
    def __init__(self, db: Database, uploads: UploadService, config, layout: DataLayout):
        self.db = db
        self.uploads = uploads
        self.config = config
        self.layout = layout

    # -- deploy ---------------------------------------------------------------------------------------------
    def deploy(self, workspace: str, body: Optional[UploadBody], user: str = None, host: str = "",
               data: Iterable[str] = (), model: Optional[str] = None, **resources) -> Dict[str, Any]:
        """Record the notebook of `user` in `workspace` (see the module): `body` its source bundle (None: the
        default one), `data` data bundle refs, `model` a model id. Answers BundleUpload + `notebook`, `job_id`
        (its image's build, None when built), `token` (shown this once), `url`, `warning`. Raises
        WorkspaceNotFound, NotebookExists (409), NotFound (an unknown data bundle), ModelNotFound,
        InvalidBundle, *_REQUEST_ERROR."""
        user = clean_user(user)[:MAX_USER]
        name = notebook_name(workspace, user)
        model = (model or "").strip() or None
        with self.db.read_scope() as session:  # refused before anything is uploaded
            workspace_row = find_workspace(session, workspace)
            self._refuse_existing(session.get(Notebook, name))
            data_ids = self._data_bundles(session, workspace_row, workspace, data)
            if model is not None:
                job = session.get(Job, find_model(session, workspace_row, model).job_id)
                if job.data_bundle_id is not None and job.data_bundle_id not in data_ids:
                    data_ids.append(job.data_bundle_id)  # the exact data the model was trained on
        self.uploads.resources(**resources)  # a bad resource is refused before the upload is read
        bundle = self.uploads.source(SOURCE_KIND, workspace, body if body is not None else
                                     body_from_bytes(default_bundle_zip(default_template(resources.get("gpu")))),
                                     user, **resources)
        token = secrets.token_urlsafe(32)
        try:
            with self.db.session_scope() as session:
                workspace_row = find_workspace(session, workspace)
                existing = session.get(Notebook, name)
                self._refuse_existing(existing)
                if existing is not None:  # culled or failed, nothing runs: replaced
                    session.delete(existing)
                    session.flush()
                    self.layout.remove_notebook(name)
                notebook_data = list(session.scalars(select(Bundle.id).where(
                    Bundle.workspace_id == workspace_row.id, Bundle.kind == "data-notebook").order_by(Bundle.id)))
                job_id = request_build(session, workspace_row, bundle, user, kind=BUILD_KIND)
                _write_token(self.layout, name, token)
                session.add(Notebook(
                    name=name, workspace_id=workspace_row.id, user=user, source_bundle_id=bundle.id,
                    build_job_id=job_id or _latest_successful_build(session, bundle.id),
                    data_bundle_ids=notebook_data + [bundle_id for bundle_id in data_ids
                                                     if bundle_id not in notebook_data],
                    model_id=model, token_sha256=token_sha256(token), state=PipelineState.PIPELINE_STARTING.value,
                    resources=(bundle.meta or {}).get("resources"), failures=0, restarts=0))
        except IntegrityError:  # another deploy of the same notebook committed first
            raise NotebookExists(f"Notebook already exists: {name}") from None
        wake(socket_name(self.config.data_dir))
        url = f"{self.config.service_host or host}/{name}/lab"
        answer = BundleUpload(glob_name=bundle.glob_name,
                              extra={"notebook": name, "job_id": job_id, "token": token, "url": url}).to_dict()
        return self.uploads.warned(answer, **resources)

    @staticmethod
    def _refuse_existing(existing: Optional[Notebook]) -> None:
        if existing is None:
            return
        if existing.desired == "kill":
            raise NotebookExists(f"Notebook already exists: {existing.name} (it is being killed: deploy again "
                                 "in a moment)")
        if existing.state not in REPLACEABLE or existing.executor_state:
            raise NotebookExists(f"Notebook already exists: {existing.name} (kill it first: kaos notebook kill "
                                 f"-n {existing.name})")

    @staticmethod
    def _data_bundles(session, workspace_row, workspace: str, refs: Iterable[str]) -> List[int]:
        """The ids of the workspace's data bundles named by `refs` (`features:9fd9d`, `/manifest:1a2b3`)."""
        ids = []
        for ref in refs:
            bundle = session.scalar(select(Bundle).where(
                Bundle.workspace_id == workspace_row.id, Bundle.kind.in_(DATA_KINDS),
                Bundle.glob_name == _data_ref(ref)))
            if bundle is None:
                raise NotFound(f"There is no data bundle {_data_ref(ref)} in workspace {workspace}")
            if bundle.id not in ids:
                ids.append(bundle.id)
        return ids

    # -- list -----------------------------------------------------------------------------------------------
    def page(self, workspace: str, host: str, limit: Optional[int] = None,
             after: Optional[Cursor] = None) -> Tuple[List[Dict[str, Any]], Optional[Cursor]]:
        """ServeInfo dicts of the workspace's notebooks, newest first (`url` `<host>/<name>/lab`, as 1.x), with
        kaos 2's `restarts`, `reason`, `data` (the glob names it reads), `model_id` and `token_fingerprint` (the
        first 16 hex of its token's SHA-256: a client that kept the token can tell it is this one's); paged as
        the inference list. Raises WorkspaceNotFound, BadRequest for a bad cursor."""
        with self.db.read_scope() as session:
            workspace_row = find_workspace(session, workspace)
            query = select(Notebook).where(Notebook.workspace_id == workspace_row.id, Notebook.desired == "run")
            query = newest_first_page(query, Notebook.created_at, Notebook.name, limit, after)
            notebooks, next_cursor = split_page(list(session.scalars(query)), limit,
                                                lambda n: (moment_key(n.created_at), n.name))
            wanted = {n.source_bundle_id for n in notebooks} | {i for n in notebooks for i in n.data_bundle_ids or []}
            bundles = {bundle.id: bundle for bundle in session.scalars(select(Bundle).where(
                Bundle.id.in_(sorted(i for i in wanted if i is not None))))} if notebooks else {}
        host = self.config.service_host or host
        return [self._info(workspace, notebook, bundles, host).to_dict() for notebook in notebooks], next_cursor

    @staticmethod
    def _info(workspace: str, notebook: Notebook, bundles: Dict[int, Bundle], host: str) -> ServeInfo:
        source = bundles.get(notebook.source_bundle_id)
        data = [bundles[i].glob_name for i in notebook.data_bundle_ids or [] if i in bundles]
        return ServeInfo(name=notebook.name, url=f"{host}/{notebook.name}/lab", user=notebook.user,
                         state=notebook.state, created_at=local_text(notebook.created_at),
                         code=bundle_descriptor(workspace, SOURCE_KIND, source),
                         image=image_name(workspace, source, BUILD_KIND),
                         extra={"restarts": notebook.restarts, "reason": notebook.reason, "data": data,
                                "model_id": notebook.model_id,
                                "token_fingerprint": notebook.token_sha256[:FINGERPRINT_HEX]})

    # -- logs, kill -----------------------------------------------------------------------------------------
    def log_text(self, workspace: Optional[str], name: str) -> str:
        """The notebook's log (its Jupyter server's output and kaos's records) as one string."""
        return "\n".join(log_of(self.config, self.log_to_follow(workspace, name)).logs())

    def log_to_follow(self, workspace: Optional[str], name: str) -> str:
        """The name of the notebook's log, once the notebook is known (PipelineNotFound otherwise)."""
        with self.db.read_scope() as session:
            find_notebook(session, workspace, name)
        return notebook_log_name(name)

    def follow_log(self, workspace: Optional[str], name: str) -> Iterator[str]:
        """The notebook's log lines ("...\\n") as they are written, until it ended (`notebook_ended`) and its log
        is drained."""
        log = self.log_to_follow(workspace, name)
        return (line + "\n" for line in log_of(self.config, log).logs(follow=True, until=lambda: self._ended(name)))

    def _ended(self, name: str) -> bool:
        with self.db.read_scope() as session:
            notebook = session.get(Notebook, name)
            return notebook_ended(notebook.desired if notebook else None, notebook.state if notebook else None)

    def kill(self, workspace: Optional[str], name: str, wait: float = KILL_WAIT_SECONDS) -> Optional[KillPending]:
        """Ask the scheduler to remove the notebook; None once its row (and so its processes or container) are
        gone, a KillPending when `wait` seconds passed first (the kill stays asked). Its work directory stays for
        the next notebook of the same workspace and user."""
        with self.db.session_scope() as session:
            find_notebook(session, workspace, name).desired = "kill"
        wake(socket_name(self.config.data_dir))
        return wait_for_kill(self.db, lambda session: session.get(Notebook, name) is None,
                             lambda session: getattr(session.get(Notebook, name), "reason", None), f"notebook {name}",
                             wait)


def _latest_successful_build(session, bundle_id: int) -> Optional[str]:
    from kaos_model import JobState
    return session.scalar(select(Job.id).where(Job.kind == BUILD_KIND, Job.source_bundle_id == bundle_id,
                                               Job.state == JobState.JOB_SUCCESS.value)
                          .order_by(Job.created_at.desc()).limit(1))
