"""Speed target (issue 11): the kubernetes executor's status tracking costs the API server a number of requests
that does not grow with the number of running workloads.

Against the fake cluster (tests/support/kube: real HTTP, the official client, a kubelet running pods as processes
here; root needed), with 20 and then 200 running workloads (Jobs labelled as kaos labels them, each with a pod
running `sleep`): for MEASURE_SECONDS, every workload's status is read once a second (the scheduler polls each
running workload on every tick),

    watch     as the executor reads it: kaos's shared watch (kubernetes_watch.Informer: one list + watch of pods,
              Jobs and Deployments in the namespace) and each workload's pods and Job looked up in its cache
    polling   the baseline, what an executor without it would do: GET the workload's Job and LIST its pods (by
              its label), per workload per look

and the API requests per second the fake counted (FakeCluster.requests) are printed side by side with their
ratio, and how long a look at every workload took (polling 200 workloads takes longer than the second between
looks here: its rate is then what the API server answers, not 400 a second). Target: the watch's rate at 200
workloads is at most its rate at 20 plus 0.5 requests a second."""
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kaos_backend.executors import kubernetes_names, kubernetes_status  # noqa: E402
from kaos_backend.executors.kubernetes_watch import Informer  # noqa: E402

SMALL, LARGE = 20, 200
MEASURE_SECONDS = 10.0
LOOK_SECONDS = 1.0
PLATFORM = "benchplatform"
NAMESPACE = "kaos"
TARGET_EXTRA_RATE = 0.5


def job_body(index: int) -> dict:
    workload = f"bench{index:04d}-0"
    labels = {kubernetes_names.MANAGED_BY: kubernetes_names.MANAGER, kubernetes_names.PLATFORM: PLATFORM,
              kubernetes_names.KIND: "train", kubernetes_names.WORKLOAD: workload}
    pod = {"restartPolicy": "Never", "containers": [{"name": "train", "image": "bench", "command": ["sleep", "3600"]}]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"train-{workload}", "labels": labels},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels}, "spec": pod}}}


def start_jobs(batch, core, first: int, last: int) -> None:
    for index in range(first, last):
        batch.create_namespaced_job(NAMESPACE, job_body(index))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=kubernetes_names.platform_selector(PLATFORM)).items
        if sum(pod.status.phase == "Running" for pod in pods) >= last:
            return
        time.sleep(0.5)
    raise SystemExit(f"kube_watch: {last} pods did not all run within 300 s")


def rate(cluster, look) -> tuple:
    """(API requests a second, the longest look in seconds) while `look()` runs once every LOOK_SECONDS (or
    back to back, when a look takes longer) for MEASURE_SECONDS."""
    before, started, longest = cluster.requests, time.monotonic(), 0.0
    while time.monotonic() - started < MEASURE_SECONDS:
        began = time.monotonic()
        look()
        took = time.monotonic() - began
        longest = max(longest, took)
        time.sleep(max(0.0, LOOK_SECONDS - took))
    return (cluster.requests - before) / (time.monotonic() - started), longest


def watch_look(informer: Informer, count: int):
    def look():
        for index in range(count):
            workload = f"bench{index:04d}-0"
            informer.jobs.get(f"train-{workload}")
            for pod in informer.pods_of(workload):
                kubernetes_status.ended(pod, "train", False, None, {})
                kubernetes_status.waiting_problem(pod)
    return look


def polling_look(batch, core, count: int):
    def look():
        for index in range(count):
            workload = f"bench{index:04d}-0"
            batch.read_namespaced_job(f"train-{workload}", NAMESPACE)
            core.list_namespaced_pod(NAMESPACE, label_selector=f"{kubernetes_names.WORKLOAD}={workload}")
    return look


def main() -> int:
    if os.geteuid() != 0:
        print("kube_watch: skipped, the fake cluster's kubelet needs root")
        return 0
    import kubernetes.client

    from tests.support.kube import FakeCluster
    with tempfile.TemporaryDirectory(prefix="kaos-bench-kube-") as root, \
            FakeCluster(root, cpu="64", memory="256Gi", pods=LARGE + 10) as cluster:
        client = cluster.api_client()
        core, batch = kubernetes.client.CoreV1Api(client), kubernetes.client.BatchV1Api(client)
        apps = kubernetes.client.AppsV1Api(client)
        informer = Informer(core, batch, apps, NAMESPACE, kubernetes_names.platform_selector(PLATFORM)).start()
        if not informer.wait_synced(30):
            raise SystemExit("kube_watch: the watch did not list within 30 s")
        results = {}
        for count, first in ((SMALL, 0), (LARGE, SMALL)):
            start_jobs(batch, core, first, count)
            (watched, watch_took), (polled, poll_took) = (rate(cluster, watch_look(informer, count)),
                                                          rate(cluster, polling_look(batch, core, count)))
            results[count] = (watched, polled)
            print(f"{count} running workloads, a look at each every {LOOK_SECONDS:g} s: watch {watched:.2f} "
                  f"requests/s (a look: {watch_took * 1000:.1f} ms), per-workload polling {polled:.1f} requests/s "
                  f"(a look: {poll_took * 1000:.0f} ms) -> ratio {watched / polled:.4f}")
        informer.stop()
        print(f"the watch's requests: {informer.calls()} (lists and watches made, all kinds)")
        small, large = results[SMALL][0], results[LARGE][0]
        ok = large <= small + TARGET_EXTRA_RATE
        print(f"kube_watch: the watch at {LARGE} workloads {large:.2f} requests/s vs at {SMALL} {small:.2f} "
              f"(target <= +{TARGET_EXTRA_RATE}) {'OK' if ok else 'MISSED'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
