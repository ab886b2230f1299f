"""The PersistentVolumeClaims of notebooks' work directories on Kubernetes (kubernetes_notebook.work_claim), as
`kaos workspace kill` removes them: those of the platform's notebooks of the workspace, by their labels
(kubernetes_names.workload_labels).

A removal that fails (the API server away: a control plane's restart) is owed: a file under
<data>/kube-claims-to-remove names the workspace, and the scheduler removes its claims once the API server
answers again (KubernetesExecutor.engine_answers_again), before any notebook starts: a new workspace of the same
name must start with no work directory, not the killed one's.
"""
import logging
import os
from pathlib import Path
from typing import Optional

from kaos_backend.executors import kubernetes_names

log = logging.getLogger("kaos_backend.executors.kubernetes")
OWED_DIR = "kube-claims-to-remove"
EVERY_WORKSPACE = "_every-workspace"   # the file of an owed removal of every workspace's (no label value has "_")


def remove_work_claims(config, workspace: Optional[str]) -> bool:
    """Delete the claims of `workspace`'s notebooks (every workspace's when None) in `config`'s cluster. True
    when none is left; False, logged and owed, when the cluster could not be asked or refused a deletion."""
    owed = _owed_dir(config) / (kubernetes_names.label_value(workspace) if workspace is not None
                                else EVERY_WORKSPACE)
    if _remove(config, workspace):
        owed.unlink(missing_ok=True)
        return True
    try:
        owed.parent.mkdir(parents=True, exist_ok=True)
        owed.write_text(workspace if workspace is not None else "")
    except OSError as error:
        log.warning("Cannot note that the notebook claims of %s are to be removed: %s",
                    workspace or "every workspace", error)
    return False


def remove_owed_work_claims(config) -> None:
    """Remove the claims whose removal failed earlier (each owed file); a file goes once its removal is done."""
    owed = _owed_dir(config)
    for entry in sorted(owed.iterdir()) if owed.is_dir() else []:
        try:
            workspace = None if entry.name == EVERY_WORKSPACE else entry.read_text()
        except OSError:
            continue
        if _remove(config, workspace):
            entry.unlink(missing_ok=True)


def _owed_dir(config) -> Path:
    return Path(config.data_dir) / OWED_DIR


def _remove(config, workspace: Optional[str]) -> bool:
    from kaos_backend.executors.kubernetes_client import is_status
    from kaos_backend.executors.kubernetes_cluster import cluster_for
    from kaos_backend.executors.kubernetes_spec import KubeSettings
    selector = {kubernetes_names.KIND: "notebook",
                kubernetes_names.PLATFORM: kubernetes_names.label_value(
                    KubeSettings.from_config(config, os.environ).platform)}
    if workspace is not None:
        selector[kubernetes_names.WORKSPACE] = kubernetes_names.label_value(workspace)
    label_selector = ",".join(f"{key}={value}" for key, value in selector.items())
    try:
        cluster = cluster_for(config)
        claims = cluster.core.list_namespaced_persistent_volume_claim(cluster.namespace,
                                                                      label_selector=label_selector).items
    except Exception as error:  # noqa: BLE001
        log.warning("Notebook work directories (claims %s) stay: the cluster did not list them (%s)",
                    label_selector, error)
        return False
    removed = True
    for claim in claims:
        try:
            cluster.core.delete_namespaced_persistent_volume_claim(claim.metadata.name, cluster.namespace,
                                                                   _preload_content=False)
        except Exception as error:  # noqa: BLE001
            if not is_status(error, 404):
                log.warning("The notebook work directory claim %s stays: %s", claim.metadata.name, error)
                removed = False
    return removed
