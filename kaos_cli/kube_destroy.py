"""`kaos destroy -c KUBERNETES|MINIKUBE`: the backend first (so that its scheduler makes nothing more), then every
object labelled app.kubernetes.io/managed-by=kaos in the namespace (the workloads, of the kinds the backend's Role
lets it create), then the objects the deploys recorded in the CLI context (kube_platform.py); never anything else
there, nor the namespace, nor a ClusterRole that another kaos's binding still names."""
import os
import time
from typing import Dict, List, Optional

from kaos_cli import kube_manifests as manifests
from kaos_cli import render
from kaos_cli.errors import KaosError
from kaos_cli.kube_manifests import BACKEND, ObjectRef
from kaos_cli.kube_platform import DEFAULT_NAMESPACE, DEPLOYMENT, connect
from kaos_cli.state import Config

GONE_WAIT = 60.0   # seconds for the backend's pods to stop, before the workloads go


def destroy(cloud: str, fields: Dict, verbose: bool) -> None:
    """Remove what the deploys of the context `fields` made (see the module's docstring). The context goes once
    all of it is gone; else a KaosError says what is left (run it again)."""
    from kaos_cli.kube_api import KubeError, default_kubeconfig

    failure = f"Destroy operation unsuccessful for kaos {cloud} environment"
    namespace = fields.get("namespace") or DEFAULT_NAMESPACE
    recorded = [path for path in (fields.get("kubeconfig") or "").split(os.pathsep) if path]
    kubeconfig = fields["kubeconfig"] if recorded and all(map(os.path.isfile, recorded)) else default_kubeconfig()
    cluster = connect(cloud, kubeconfig, fields.get("kube_context"), failure)
    refs = manifests.parse_refs(fields.get("objects")) or _shipped_refs(fields.get("target"), namespace)
    try:
        problems = _destroy(cluster, namespace, refs, verbose)
    except KubeError as error:
        problems = [error.message]
    finally:
        cluster.close()
    if problems:
        raise KaosError(f"{failure}: {problems[0]} - run kaos destroy -c {cloud} again")
    config = Config.load()
    config.remove_context(cloud)  # clears [active] only when it was the active context
    config.save()


def _shipped_refs(target: Optional[str], namespace: str) -> List[ObjectRef]:
    """What a deploy of `target` makes, for a context that lost its list."""
    if target not in manifests.TARGETS:
        return [DEPLOYMENT]
    objects = manifests.prepare(manifests.load(target), namespace, None, "")
    return ([ObjectRef("v1", "Secret", BACKEND), ObjectRef("v1", "Secret", manifests.POSTGRES_SECRET)]
            + [manifests.ref(obj) for obj in objects] + manifests.claims_of(objects))


def _destroy(cluster, namespace: str, refs: List[ObjectRef], verbose: bool) -> List[str]:
    from kaos_cli.kube_api import KubeError

    problems = []

    def remove(ref: ObjectRef) -> None:
        try:
            gone = cluster.delete(ref, namespace if ref.namespaced else None)
        except KubeError as error:
            problems.append(f"{ref}: {error.message}")
            return
        if verbose:
            render.info(f"deleted {ref}" if gone else f"{ref} was not there")

    remove(DEPLOYMENT)
    _wait_backend_gone(cluster, namespace)
    for api_version, kind in manifests.WORKLOAD_KINDS:
        for obj in cluster.list(api_version, kind, namespace, manifests.MANAGED_BY):
            remove(ObjectRef(api_version, kind, obj["metadata"]["name"]))
    for ref in reversed(refs):
        if ref == DEPLOYMENT:
            continue
        if ref.kind == "ClusterRole" and _bound_elsewhere(cluster, ref.name, refs):
            if verbose:
                render.info(f"{ref} stays: another kaos of the cluster is bound to it")
            continue
        remove(ref)
    return problems


def _wait_backend_gone(cluster, namespace: str) -> None:
    """Wait (bounded) until the backend's pods stopped: its scheduler would otherwise make workloads again."""
    deadline = time.monotonic() + GONE_WAIT
    selector = f"app.kubernetes.io/name={BACKEND}"
    while cluster.list("v1", "Pod", namespace, selector) and time.monotonic() < deadline:
        time.sleep(0.5)


def _bound_elsewhere(cluster, role: str, refs: List[ObjectRef]) -> bool:
    """Does a ClusterRoleBinding other than ours name the ClusterRole `role` (a second kaos in the cluster)?"""
    ours = {ref.name for ref in refs if ref.kind == "ClusterRoleBinding"}
    return any(binding["metadata"]["name"] not in ours and (binding.get("roleRef") or {}).get("name") == role
               for binding in cluster.list("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", None))
