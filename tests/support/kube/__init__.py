"""A stateful fake Kubernetes API server, controllers and kubelet for tests (see README.md beside this file)."""
from .cluster import FakeCluster
from .images import Image, host_images, known_images

__all__ = ["FakeCluster", "Image", "host_images", "known_images"]
