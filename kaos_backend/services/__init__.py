"""The rules of the platform, free of Flask: workspaces, uploads (and, later, pipelines and jobs)."""
from kaos_backend.config import Config
from kaos_backend.db import Database
from kaos_backend.storage import BlobStore


class Services:
    """Everything a request (or the scheduler) needs, built once per process from a `Config`."""

    def __init__(self, config: Config, database: Database = None, store: BlobStore = None):
        from kaos_backend.layout import DataLayout
        from kaos_backend.services.artifact_tokens import ArtifactTokens
        from kaos_backend.services.blobs import BlobService
        from kaos_backend.services.inference import InferenceService
        from kaos_backend.services.jobs import JobService
        from kaos_backend.services.pod_inputs import PodInputs
        from kaos_backend.services.pod_output import PodOutput
        from kaos_backend.services.notebooks import NotebookService
        from kaos_backend.services.train import TrainService
        from kaos_backend.services.uploads import UploadService
        from kaos_backend.services.workspaces import WorkspaceService

        self.config = config
        self.db = database or Database(config.database_url)
        self.store = store or BlobStore(config.blob_dir)
        self.layout = DataLayout(config.data_dir)
        self.blobs = BlobService(self.db, self.store)
        self.workspaces = WorkspaceService(self.db, self.store, config, self.layout)
        self.uploads = UploadService(self.db, self.store, config)
        self.jobs = JobService(self.db, self.layout, config)
        self.train = TrainService(self.db, self.uploads)
        self.inference = InferenceService(self.db, self.uploads, config, self.layout)
        self.artifact_tokens = ArtifactTokens(self.db)   # the internal artifact routes (api/artifacts.py)
        self.pod_inputs = PodInputs(config.data_dir, config.max_bundle_bytes)
        self.pod_output = PodOutput(config.data_dir, config.max_upload_bytes, config.max_bundle_bytes)
        self.notebooks = NotebookService(self.db, self.uploads, config, self.layout)

    def dispose(self, close: bool = True) -> None:
        self.db.dispose(close=close)
