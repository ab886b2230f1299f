"""The labels kaos puts on what it makes on a Docker engine (images, containers, networks, volumes).

What kaos makes for a platform (one backend's data directory) carries `MANAGED` ("true"), `KIND` (what it is:
`build-train`, `train`, ...) and `PLATFORM`, the platform id (`kaos_backend.config.platform_id`): `kaos destroy
-c DOCKER` removes by `PLATFORM`.

An image's labels are inherited by every image built FROM it, so the base image carries only labels of its own
namespace (`BASE_IMAGE_*`), which say what it is made of: were it labelled `MANAGED`, every image built on it (a
user's own included) would look like kaos's. A build sets its own `MANAGED`, `KIND` and `PLATFORM`. Every platform
on the engine shares the base image: no platform's destroy removes it.
"""
PREFIX = "io.kaos."
MANAGED = PREFIX + "managed"
KIND = PREFIX + "kind"
PLATFORM = PREFIX + "platform"
# What the Docker executor adds on a workload's container (and a build's image): the job (a build's, a training's,
# or the endpoint's name) and the workload (a training's partition: "<job id>-<index>").
JOB = PREFIX + "job"
WORKLOAD = PREFIX + "workload"

# The base image's own (inherited by the images built on it, where they say what they were built on).
BASE_IMAGE_RECIPE = PREFIX + "base-image.recipe"      # sha256 of the recipe and the host's CA bundle
BASE_IMAGE_SUITE = PREFIX + "base-image.suite"        # the Debian suite, e.g. bookworm
BASE_IMAGE_PACKAGES = PREFIX + "base-image.packages"  # the Debian packages asked for, comma-separated
