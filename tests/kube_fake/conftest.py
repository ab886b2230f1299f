from tests.support.kube.fixtures import kube_cluster  # noqa: F401  (the fixture)
