"""Provenance graphs (reference §6.9) as Graphviz DOT: a model's (code → build → image; data and hyperparameters
→ train → model) for `kaos train provenance`, which an endpoint's graph extends for `kaos serve provenance`."""
from pathlib import Path
from typing import Any, Dict, List

from kaos_backend.models import Bundle, Job, Partition
from kaos_backend.services.jobs import local_text
from kaos_backend.zipstream import tree_entries


def dot_quote(text: Any) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class ProvenanceGraph:
    """A Graphviz digraph in the original's style: repos as cylinders, pipelines as eggs, a caption."""

    def __init__(self):
        self.lines = ["digraph provenance {", "  rankdir=LR;"]

    def repo(self, *nodes: str) -> None:
        self.lines += [f"  {dot_quote(node)} [shape=cylinder];" for node in nodes]

    def pipeline(self, *nodes: str) -> None:
        self.lines += [f"  {dot_quote(node)} [shape=egg];" for node in nodes]

    def box(self, node: str, color: str) -> None:
        self.lines.append(f"  {dot_quote(node)} [shape=box, color={color}];")

    def edge(self, a: str, b: str, label: str = "") -> None:
        self.lines.append(f"  {dot_quote(a)} -> {dot_quote(b)}" + (f" [label={dot_quote(label)}];" if label else ";"))

    def source(self, caption: List[str]) -> str:
        return "\n".join(self.lines + [f"  label={dot_quote(chr(10).join(caption))};", "}"]) + "\n"


def model_parts(session, job: Job) -> Dict[str, Bundle]:
    """The job's input bundles that still exist: `code`, `data` and (hyperparameter jobs) `hyper`."""
    parts = {key: session.get(Bundle, bundle_id) if bundle_id else None for key, bundle_id in (
        ("code", job.source_bundle_id), ("data", job.data_bundle_id), ("hyper", job.hyper_bundle_id))}
    return {key: bundle for key, bundle in parts.items() if bundle is not None}


def model_graph(workspace: str, job: Job, partition: Partition, parts: Dict[str, Bundle]) -> ProvenanceGraph:
    """source-train → build-train → image → train ← ingestion (data) [← hyper]; train → train repo (the model).
    The endpoint graph (`kaos serve provenance`) continues from the `train-<ws>:repo` node."""
    ws = workspace
    graph = ProvenanceGraph()
    graph.repo(f"source-train-{ws}", f"build-train-{ws}:repo", f"ingestion-{ws}", f"train-{ws}:repo",
               *((f"hyper-{ws}",) if "hyper" in parts else ()))
    graph.pipeline(f"build-train-{ws}", f"train-{ws}")
    code, data = parts.get("code"), parts.get("data")
    graph.edge(f"source-train-{ws}", f"build-train-{ws}", f"/{code.glob_name}" if code else "")
    graph.edge(f"build-train-{ws}", f"build-train-{ws}:repo")
    graph.edge(f"build-train-{ws}:repo", f"train-{ws}", f"build-train-{ws}:{code.hash5}" if code else "")
    graph.edge(f"ingestion-{ws}", f"train-{ws}", f"/{data.glob_name}" if data else "")
    if "hyper" in parts:
        hyper_path = f"/{partition.hyper_file}" if partition.hyper_file else f"/{parts['hyper'].glob_name}"
        graph.edge(f"hyper-{ws}", f"train-{ws}", hyper_path)
    graph.edge(f"train-{ws}", f"train-{ws}:repo", f"job {job.id}")
    return graph


def model_file_path(output_dir: Path, hex6: str) -> str:
    """`/<hex6>/model/<file>` when the model is one file (the original's caption), else `/<hex6>/model/`."""
    model_dir = output_dir / "model"
    files = [entry for entry in tree_entries(model_dir, f"/{hex6}/model") if entry.path is not None]
    return files[0].name if len(files) == 1 else f"/{hex6}/model/"


def model_provenance_dot(workspace: str, job: Job, partition: Partition, parts: Dict[str, Bundle],
                         model_path: str) -> str:
    """The graph of `kaos train provenance`: the model graph ending in a "model" node, and the caption
    model path, model id, "Trained model with kaos", user, created_at."""
    graph = model_graph(workspace, job, partition, parts)
    graph.box("model", "blue")
    graph.edge(f"train-{workspace}:repo", "model", partition.model_id)
    created = partition.finished_at or job.finished_at or job.created_at
    return graph.source([model_path, f"model: {partition.model_id}", "Trained model with kaos",
                         f"user: {job.user}", f"created_at: {local_text(created)}"])
