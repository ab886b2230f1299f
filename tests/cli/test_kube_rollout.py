"""kaos_cli/kube_rollout.py reads a Deployment's and its pods' status as the API server reports them (the shapes
below are those of real answers): when the backend counts as rolled out, which problems end the wait at once and
which are waited for. The same against the fake cluster's pods: tests/kubernetes/test_kube_deploy.py."""
import pytest

from kaos_cli.kube_rollout import CRASH_RESTARTS, pod_problem, rolled_out, stuck


def deployment(generation=2, observed=2, replicas=1, updated=1, available=1, conditions=()):
    status = {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
              "availableReplicas": available, "conditions": list(conditions)}
    return {"metadata": {"name": "kaos-backend", "generation": generation}, "spec": {"replicas": 1},
            "status": {key: value for key, value in status.items() if value}}


@pytest.mark.parametrize("shape, done", [
    ({}, True),
    ({"observed": 1}, False),                     # the controller has not seen the new template yet
    ({"replicas": 2}, False),                     # a pod of the old template is still there
    ({"updated": 0, "replicas": 0}, False),
    ({"available": 0}, False),
])
def test_rolled_out_is_what_kubectl_rollout_status_waits_for(shape, done):
    assert rolled_out(deployment(**shape)) is done


def test_a_deployment_whose_pods_cannot_be_created_or_that_passed_its_deadline_is_stuck():
    refused = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
               "message": 'pods "kaos-backend-5d9c-x" is forbidden: violates PodSecurity "baseline:latest": '
                          'privileged (container "docker" must not set securityContext.privileged=true)'}
    assert stuck(deployment(conditions=[refused])) == f"FailedCreate: {refused['message']}"
    late = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "kaos-backend-5d9c" has timed out progressing.'}
    assert stuck(deployment(conditions=[late])) == late["message"]
    going = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": "..."}
    assert stuck(deployment(conditions=[going])) is None


def pod(containers=(), init=(), conditions=(), **status):
    return {"metadata": {"name": "kaos-backend-5d9c-x"}, "status": dict(
        status, conditions=list(conditions), containerStatuses=list(containers), initContainerStatuses=list(init))}


def waiting(reason, message=None, name="backend", restarts=0, last=None):
    return {"name": name, "restartCount": restarts, "state": {"waiting": {"reason": reason, "message": message}},
            "lastState": {"terminated": last} if last else {}}


def test_what_ends_the_wait_at_once_and_what_is_waited_for():
    assert pod_problem(pod([waiting("ContainerCreating")])) is None
    assert pod_problem(pod([waiting("ErrImagePull", "rpc error: not found")])) == (
        False, "pod kaos-backend-5d9c-x: container backend: ErrImagePull: rpc error: not found")  # pulled again
    assert pod_problem(pod([waiting("ImagePullBackOff", 'Back-off pulling image "x"')])) == (
        True, 'pod kaos-backend-5d9c-x: container backend: ImagePullBackOff: Back-off pulling image "x"')
    assert pod_problem(pod([waiting("CreateContainerConfigError", 'secret "kaos-postgres" not found')]))[0]
    assert pod_problem(pod(init=[waiting("ImagePullBackOff", name="fetch")]))[1].endswith(
        "container fetch: ImagePullBackOff")

    crashed = {"exitCode": 1, "reason": "Error", "message": "it broke\nbadly"}
    first = pod_problem(pod([waiting("CrashLoopBackOff", restarts=1, last=crashed)]))
    assert first == (False, "pod kaos-backend-5d9c-x: container backend: CrashLoopBackOff (exit code 1, Error): "
                            "it broke badly")  # PostgreSQL may still be starting
    assert pod_problem(pod([waiting("CrashLoopBackOff", restarts=CRASH_RESTARTS, last=crashed)]))[0] is True

    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/3 nodes are available: 3 Insufficient cpu."}
    assert pod_problem(pod(conditions=[unschedulable])) == (
        False, "pod kaos-backend-5d9c-x is Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.")
    assert pod_problem(pod(phase="Failed", reason="Evicted", message="The node was low on resource: memory.")) == (
        False, "pod kaos-backend-5d9c-x was Evicted: The node was low on resource: memory.")
    oom = {"name": "backend", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
    assert pod_problem(pod([oom])) == (False, "pod kaos-backend-5d9c-x: container backend: exited with code 137 "
                                              "(OOMKilled)")
