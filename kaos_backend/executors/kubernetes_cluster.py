"""What the kubernetes executors of one process share, per configuration: the API objects of the official
client, the shared watch of the platform's objects in the namespace (kubernetes_watch.Informer, started on first
use: in the scheduler, which polls; never in an API worker, which only reads logs), and the artifact tokens in
the platform's database (services/artifact_tokens.py: issued when a workload starts, revoked when it ends).

    cluster = cluster_for(config)          # one per process, namespace, platform and kubeconfig
    cluster.core / .batch / .apps          # CoreV1Api, BatchV1Api, AppsV1Api
    cluster.informer()                     # started and listed once (or ClusterUnavailable after SYNC_SECONDS)
    cluster.tokens                         # ArtifactTokens
"""
import os
import threading
from typing import Dict, Tuple

from kaos_backend.config import platform_id
from kaos_backend.executors import kubernetes_client, kubernetes_names
from kaos_backend.executors.kubernetes_client import ClusterUnavailable
from kaos_backend.executors.kubernetes_watch import Informer

SYNC_SECONDS = 30.0

_lock = threading.Lock()
_clusters: Dict[Tuple, "Cluster"] = {}


class Cluster:
    def __init__(self, config):
        self.config = config
        self.namespace = config.namespace
        self.platform = platform_id(config.data_dir)
        self.selector = kubernetes_names.platform_selector(self.platform)
        self.core, self.batch, self.apps = kubernetes_client.apis(config)
        self._informer = None
        self._tokens = None
        self._lock = threading.Lock()

    def informer(self) -> Informer:
        """The shared watch, started on first use; ClusterUnavailable when it cannot list within SYNC_SECONDS."""
        with self._lock:
            if self._informer is None:
                self._informer = Informer(self.core, self.batch, self.apps, self.namespace, self.selector).start()
            informer = self._informer
        if not informer.wait_synced(SYNC_SECONDS):
            raise ClusterUnavailable(f"the Kubernetes API did not list the platform's objects in {self.namespace} "
                                     f"within {SYNC_SECONDS:g}s (see the backend log)")
        return informer

    def watching(self) -> bool:
        return self._informer is not None

    @property
    def tokens(self):
        with self._lock:
            if self._tokens is None:
                from kaos_backend.db import Database
                from kaos_backend.services.artifact_tokens import ArtifactTokens
                self._tokens = ArtifactTokens(Database(self.config.database_url, create_tables=False))
            return self._tokens

    def close(self) -> None:
        if self._informer is not None:
            self._informer.stop()
        if self._tokens is not None:
            self._tokens.db.dispose()


def cluster_for(config) -> Cluster:
    """This process's Cluster for `config` (made on first use). Raises ClusterUnavailable."""
    key = (os.getpid(), config.kubeconfig, config.kube_context, os.environ.get("KUBECONFIG", ""), config.namespace,
           str(config.data_dir), config.database_url)
    with _lock:
        cluster = _clusters.get(key)
        if cluster is None:
            cluster = _clusters[key] = Cluster(config)
        return cluster


def reconnect_all() -> None:
    """The API server answers again after it was away: every shared watch of this process is made again and every
    followed log read again (kubernetes_watch.Informer.reconnect, kubernetes_follower.interrupt_all), for their
    connections may be dead without a word (its host powered off or rebooted), which nothing would notice for
    minutes (the reads' timeouts). Resumed from where each got to: nothing is listed or copied twice."""
    from kaos_backend.executors import kubernetes_follower
    with _lock:
        clusters = [cluster for key, cluster in _clusters.items() if key[0] == os.getpid()]
    for cluster in clusters:
        if cluster.watching():
            cluster._informer.reconnect()
    kubernetes_follower.interrupt_all()


def close_all() -> None:
    """Stop every shared watch of this process and forget them (a test whose fake cluster goes)."""
    with _lock:
        clusters = list(_clusters.values())
        _clusters.clear()
    for cluster in clusters:
        cluster.close()


__all__ = ["Cluster", "ClusterUnavailable", "cluster_for", "close_all", "reconnect_all"]
