"""Watches through the official client's `kubernetes.watch.Watch`: the changes after a list's resourceVersion in
order, resumed from the last resourceVersion after the server ends the stream, 410 Gone for a version older than
the history, bookmarks, and label selectors that see an object come and go."""
import threading

import kubernetes.client as k8s
import pytest
from kubernetes import watch
from kubernetes.client.rest import ApiException

from tests.kube_fake.helpers import NS, apis, wait_for


def config_map(name: str, labels=None) -> k8s.V1ConfigMap:
    return k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, labels=labels), data={"v": "1"})


class Collector:
    """A watch running in a thread of its own, keeping (type, name, resourceVersion) of each event."""

    def __init__(self, cluster, function, *args, **kwargs):
        self.cluster = cluster
        self.watch = watch.Watch()
        self.events = []
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(function, args, kwargs), daemon=True)
        self.thread.start()

    def _run(self, function, args, kwargs):
        try:
            for event in self.watch.stream(function, *args, **kwargs):
                meta = event["raw_object"]["metadata"]
                self.events.append((event["type"], meta.get("name"), meta["resourceVersion"]))
        except ApiException as error:
            self.error = error

    def names(self, kind: str = None):
        return [name for event_type, name, _ in self.events if kind in (None, event_type)]

    def stop(self):
        self.watch.stop()
        self.cluster.disconnect_watches()  # a client blocked reading sees its stop flag once the stream ends
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def test_a_watch_from_a_lists_version_sees_each_change_once_in_order(kube_cluster):
    api = apis(kube_cluster)
    api.core.create_namespaced_config_map(NS, config_map("before"))
    listed = api.core.list_namespaced_config_map(NS)
    collector = Collector(kube_cluster, api.core.list_namespaced_config_map, NS,
                          resource_version=listed.metadata.resource_version)
    api.core.create_namespaced_config_map(NS, config_map("a"))
    api.core.patch_namespaced_config_map("a", NS, {"data": {"v": "2"}})
    api.core.delete_namespaced_config_map("a", NS)
    wait_for(lambda: len(collector.events) >= 3, "three events")
    collector.stop()
    assert [(t, n) for t, n, _ in collector.events] == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    versions = [int(v) for _, _, v in collector.events]
    assert versions == sorted(versions) and versions[0] > int(listed.metadata.resource_version)


def test_a_watch_resumes_from_its_last_version_after_the_server_ends_it(kube_cluster):
    api = apis(kube_cluster)
    listed = api.core.list_namespaced_config_map(NS)
    collector = Collector(kube_cluster, api.core.list_namespaced_config_map, NS,
                          resource_version=listed.metadata.resource_version)
    api.core.create_namespaced_config_map(NS, config_map("first"))
    wait_for(lambda: collector.names() == ["first"], "the first event")
    first_version = collector.events[0][2]

    kube_cluster.disconnect_watches()  # the server ends every open stream, as a restart of it would
    api.core.create_namespaced_config_map(NS, config_map("second"))  # while no watch is open, perhaps
    wait_for(lambda: "second" in collector.names(), "the event after the disconnect")
    api.core.create_namespaced_config_map(NS, config_map("third"))
    wait_for(lambda: "third" in collector.names(), "a later event")
    collector.stop()
    assert collector.names() == ["first", "second", "third"]  # none lost, none repeated
    watches = [query for method, path, query in kube_cluster.routes.history
               if path == f"/api/v1/namespaces/{NS}/configmaps" and "watch=true" in query]
    assert len(watches) >= 2 and f"resourceVersion={first_version}" in watches[1]


def test_a_version_older_than_the_history_is_410_gone(kube_cluster):
    api = apis(kube_cluster)
    old = api.core.list_namespaced_config_map(NS).metadata.resource_version
    api.core.create_namespaced_config_map(NS, config_map("later"))
    kube_cluster.compact()
    with pytest.raises(ApiException) as gone:  # the client retries once after a 410, then raises it
        for _ in watch.Watch().stream(api.core.list_namespaced_config_map, NS, resource_version=old):
            pass
    assert gone.value.status == 410 and "Expired: too old resource version" in gone.value.reason

    response = api.core.list_namespaced_config_map(NS, watch=True, resource_version=old, _preload_content=False)
    first = response.readline().decode()
    response.release_conn()
    assert '"type": "ERROR"' in first and '"code": 410' in first and '"reason": "Expired"' in first

    relisted = api.core.list_namespaced_config_map(NS)  # what an informer does then: list again, watch from there
    collector = Collector(kube_cluster, api.core.list_namespaced_config_map, NS,
                          resource_version=relisted.metadata.resource_version)
    api.core.create_namespaced_config_map(NS, config_map("after"))
    wait_for(lambda: collector.names() == ["after"], "the event after relisting")
    collector.stop()


def test_bookmarks_carry_the_latest_version(kube_cluster):
    api = apis(kube_cluster)
    listed = api.core.list_namespaced_pod(NS)
    api.core.create_namespaced_config_map(NS, config_map("elsewhere"))  # another resource moves the version on
    stream = watch.Watch()
    seen = []
    for event in stream.stream(api.core.list_namespaced_pod, NS, resource_version=listed.metadata.resource_version,
                               allow_watch_bookmarks=True, timeout_seconds=3):
        seen.append(event)
        if event["type"] == "BOOKMARK":
            stream.stop()
    bookmark = seen[-1]
    assert bookmark["type"] == "BOOKMARK" and bookmark["raw_object"]["kind"] == "Pod"
    assert int(stream.resource_version) > int(listed.metadata.resource_version)


def test_a_label_selected_watch_sees_an_object_come_and_go_as_its_labels_change(kube_cluster):
    api = apis(kube_cluster)
    api.core.create_namespaced_config_map(NS, config_map("shifty", {"kaos.io/kind": "serve"}))
    listed = api.core.list_namespaced_config_map(NS, label_selector="kaos.io/kind=train")
    assert listed.items == []
    collector = Collector(kube_cluster, api.core.list_namespaced_config_map, NS, label_selector="kaos.io/kind=train",
                          resource_version=listed.metadata.resource_version)
    api.core.patch_namespaced_config_map("shifty", NS, {"metadata": {"labels": {"kaos.io/kind": "train"}}})
    api.core.patch_namespaced_config_map("shifty", NS, {"data": {"v": "2"}})
    api.core.patch_namespaced_config_map("shifty", NS, {"metadata": {"labels": {"kaos.io/kind": "serve"}}})
    api.core.patch_namespaced_config_map("shifty", NS, {"data": {"v": "3"}})  # not selected: not seen
    wait_for(lambda: len(collector.events) >= 3, "three events")
    collector.stop()
    assert [t for t, _, _ in collector.events] == ["ADDED", "MODIFIED", "DELETED"]


def test_a_watch_without_a_version_starts_with_what_exists(kube_cluster):
    api = apis(kube_cluster)
    api.core.create_namespaced_config_map(NS, config_map("existing"))
    collector = Collector(kube_cluster, api.core.list_namespaced_config_map, NS)
    wait_for(lambda: collector.names() == ["existing"], "the synthetic ADDED event")
    collector.stop()
    assert collector.events[0][0] == "ADDED"
