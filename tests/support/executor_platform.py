"""What the executor tests share: a platform's configuration, its blob store and data layout, its executors made
by the registry as the configuration chooses them, and bundles put in the store as the API's uploads put them."""
import io
import zipfile
from typing import Dict

from kaos_backend.config import Config
from kaos_backend.executors import registry
from kaos_backend.executors.base import Artifact, Executor
from kaos_backend.layout import DataLayout
from kaos_backend.storage import BlobStore


class ExecutorPlatform:
    """One data directory's store and layout, and the image the tests' workloads run in (None until built)."""

    def __init__(self, config: Config):
        self.config = config
        self.store = BlobStore(config.blob_dir)
        self.layout = DataLayout(config.data_dir)
        self.image = None

    def executor(self) -> Executor:
        return registry.make_executor(self.config)

    def bundle(self, files: Dict[str, str], root: str) -> Artifact:
        """A zip of `files` ({path in the zip: text}) stored as a bundle whose top folder is `root`."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, text in files.items():
                archive.writestr(name, text)
        buffer.seek(0)
        digest = self.store.put_stream(buffer).digest
        return Artifact(Artifact.BUNDLE, digest, root, f"{root}:{digest[:5]}")
