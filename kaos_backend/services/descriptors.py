"""Where things live, named as kaos 1.x named them (reference §5.1 DataDescriptor, §6.1 repos): a bundle, an
image, a model; and a trained model's ModelInfo. Pachyderm's repos are our bundle kinds and job kinds, its
commits stable ids of what they name: the first 32 hex of a bundle's blob digest, a build or train job's id."""
import os
from pathlib import Path
from typing import Optional

from kaos_model.wire import DataDescriptor, ModelInfo

from kaos_backend.models import Bundle
from kaos_backend.services.provenance import model_file_path
from kaos_backend.zipstream import tree_entries

COMMIT_HEX = 32
# The 1.x repo (before `-<ws>`) a bundle kind lives in, as the training reads it: data bundles and manifests
# reach a training through the ingestion repo (§6.1), hyperparameters through the hyper repo.
REPO_OF_KIND = {"source-train": "source-train", "source-serve": "source-serve", "source-notebook": "source-notebook",
                "features": "ingestion", "manifest": "ingestion", "params": "hyper", "data-notebook": "data-notebook"}


def bundle_descriptor(workspace: str, kind: str, bundle: Optional[Bundle], path: Optional[str] = None) \
        -> DataDescriptor:
    """The bundle (of `kind`) as 1.x described an input: `path` `/<glob name>` unless given, `author` its
    uploader. A bundle that no longer exists keeps its repo, with an empty commit and path."""
    repo = f"{REPO_OF_KIND[kind]}-{workspace}"
    if bundle is None:
        return DataDescriptor(repo=repo, commit="", path=path or "")
    return DataDescriptor(repo=repo, commit=bundle.blob_digest[:COMMIT_HEX], path=path or f"/{bundle.glob_name}",
                          author=bundle.user)


def image_name(workspace: str, source: Optional[Bundle], kind: str = "build-train") -> Optional[str]:
    """`build-train-<ws>:<hash5>` (or build-serve): the image built from a source bundle."""
    return f"{kind}-{workspace}:{source.hash5}" if source is not None else None


def image_descriptor(workspace: str, source: Optional[Bundle], build_job_id: Optional[str],
                     kind: str = "build-train") -> DataDescriptor:
    """The image a build made of `source`: repo `build-train-<ws>`, path `/build-train-<ws>:<hash5>`, commit the
    build job's id (the source's digest prefix when that build is not known)."""
    name = image_name(workspace, source, kind)
    commit = build_job_id or (source.blob_digest[:COMMIT_HEX] if source is not None else "")
    return DataDescriptor(repo=f"{kind}-{workspace}", commit=commit, path=f"/{name}" if name else "")


def output_descriptor(workspace: str, job_id: str, model_id: str, user: Optional[str]) -> DataDescriptor:
    """A train partition's output as 1.x had it: repo `train-<ws>`, commit the train job's id, path the model id
    `<branch>:<hex6>`, branch the output branch; `model_id` and `model_path` (`/<hex6>/model/`) as extras."""
    branch, _, hex6 = model_id.rpartition(":")
    return DataDescriptor(repo=f"train-{workspace}", commit=job_id, path=model_id, branch=branch or "master",
                          author=user, extra={"model_id": model_id, "model_path": f"/{hex6}/model/"})


def model_info(model_id: str, user: str, job_id: str, created_at: str, model_dir: Optional[str]) -> ModelInfo:
    """The ModelInfo of a trained model whose files are in `model_dir` (the partition's `<out>/model`): `size`
    in bytes of its regular files, `path` `/<hex6>/model/<file>` (one file) or `/<hex6>/model/`."""
    hex6 = model_id.rpartition(":")[2]
    size = 0
    if model_dir:
        for entry in tree_entries(Path(model_dir), f"/{hex6}/model"):
            if entry.path is not None:
                try:
                    size += os.stat(entry.path).st_size
                except OSError:  # removed meanwhile
                    pass
    path = model_file_path(Path(model_dir).parent, hex6) if model_dir else f"/{hex6}/model/"
    return ModelInfo(user=user, commit_id=job_id, size=size, path=path, base_path=f"/{hex6}", model_id=model_id,
                     created_at=created_at)
