"""The kubernetes executor against the fake cluster (tests/support/kube), for tests that run it in-process (the
executor contract) or in a backend process (KAOS_EXECUTOR=kubernetes):

    venv_images(data_dir)        the fake's image resolver for the `local-venv` image builder's images
                                 (`kaos-venv:<key>` = the virtualenv <data>/envs/<key>: its bin first on PATH,
                                 `python3` its interpreter); any other image is this machine, as by default
    ArtifactServer(config)       the backend's app on 127.0.0.1 (werkzeug, threads): the internal artifact routes
                                 that pods fetch from and hand back to, for a test without a backend process
    kube_config(cluster, ...)    the Config overrides of a kubernetes platform on `cluster`
    live_output(cluster, spec)   where a running training's pod writes its output on this machine (its emptyDir)
    delete_platform(config)      remove what a platform left in the cluster (between tests)
"""
import threading
from pathlib import Path
from typing import List, Optional

from tests.support.kube.images import Image, host_images, host_path
from tests.support.kube.kinds import PODS

VENV_PREFIX = "kaos-venv:"


def venv_images(data_dir):
    """An image resolver: `kaos-venv:<key>` runs in the virtualenv <data_dir>/envs/<key> (None while it is not
    there: the pull fails), anything else on this machine."""
    envs = Path(data_dir) / "envs"

    def resolve(image: str) -> Optional[Image]:
        if not image.startswith(VENV_PREFIX):
            return host_images(image)
        bin_dir = envs / image[len(VENV_PREFIX):] / "bin"
        if not (bin_dir / "python3").exists():
            return None

        def rewrite(argv):
            return [str(bin_dir / "python3")] + argv[1:] if argv and argv[0] in ("python", "python3") else argv
        return Image(env={"PATH": f"{bin_dir}:{host_path()}", "HOME": "/root", "VIRTUAL_ENV": str(bin_dir.parent)},
                     rewrite=rewrite)
    return resolve


class ArtifactServer:
    """The backend's Flask app (create_app) served on 127.0.0.1 in threads: the internal artifact routes."""

    def __init__(self, config):
        from werkzeug.serving import make_server

        from kaos_backend.app import create_app
        self.app = create_app(config)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="artifact-server", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.extensions["kaos"].dispose()


def kube_config(cluster, kubeconfig: Path, internal_url: str, **more) -> dict:
    """Config overrides (kaos_backend.config.Config) of a kubernetes platform whose pods run on `cluster`."""
    return {"executor": "kubernetes", "kubeconfig": cluster.write_kubeconfig(kubeconfig), "namespace": "kaos",
            "internal_url": internal_url, "image_builder": "local-venv", **more}


def kube_env(cluster, kubeconfig: Path, internal_url: str, **more) -> dict:
    """The same as KAOS_* environment variables, for a backend process."""
    return {f"KAOS_{key.upper()}": str(value) for key, value in kube_config(cluster, kubeconfig, internal_url,
                                                                            **more).items()}


def pods_of(cluster, workload: str) -> List[dict]:
    """The pods of a workload (its spec's job_id) in the fake's store, oldest first (creationTimestamp has whole
    seconds: pods made within one second come in the store's order)."""
    from kaos_backend.executors.kubernetes_names import WORKLOAD, label_value
    pods, _ = cluster.store.list(PODS, "kaos", lambda pod: (pod["metadata"].get("labels") or {}).get(WORKLOAD)
                                 == label_value(workload))
    pods.sort(key=lambda pod: pod["metadata"]["creationTimestamp"])
    return pods


def pod_of(cluster, workload: str) -> Optional[dict]:
    """The newest pod of a workload (its spec's job_id) in the fake's store, or None."""
    pods = pods_of(cluster, workload)
    return pods[-1] if pods else None


def live_output(cluster, spec) -> Optional[Path]:
    """Where the pod of the training `spec` writes its output on this machine (its emptyDir `pfs`), while the pod
    is there; None once it is gone."""
    pod = pod_of(cluster, spec.job_id)
    if pod is None:
        return None
    hex6 = spec.output.output_parts()[1]
    return Path(cluster.kubelet.volumes.pod_dir(pod)) / "volumes" / "pfs" / "out" / hex6


def delete_platform(config) -> None:
    """Delete every Job and Deployment of the platform of `config` and their pods at once (what a test left)."""
    from kaos_backend.config import platform_id
    from kaos_backend.executors import kubernetes_client, kubernetes_names
    core, batch, apps = kubernetes_client.apis(config)
    selector = kubernetes_names.platform_selector(platform_id(config.data_dir))
    for job in batch.list_namespaced_job(config.namespace, label_selector=selector).items:
        batch.delete_namespaced_job(job.metadata.name, config.namespace, propagation_policy="Background")
    for deployment in apps.list_namespaced_deployment(config.namespace, label_selector=selector).items:
        apps.delete_namespaced_deployment(deployment.metadata.name, config.namespace,
                                          propagation_policy="Background")
    for pod in core.list_namespaced_pod(config.namespace, label_selector=selector).items:
        try:
            core.delete_namespaced_pod(pod.metadata.name, config.namespace, grace_period_seconds=0)
        except Exception:  # noqa: BLE001 - gone meanwhile
            pass
