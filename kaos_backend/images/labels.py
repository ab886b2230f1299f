"""The labels kaos puts on what it makes on a Docker engine (images, containers, networks, volumes).

Every object kaos makes carries `MANAGED` ("true") and `KIND` (what it is: `base-image`, `build-train`, ...).
Objects of one platform (one backend's data directory) also carry `PLATFORM`, the platform id
(`kaos_backend.config.platform_id`): `kaos destroy -c DOCKER` removes by that label. The base image carries no
`PLATFORM`: every platform on the engine shares it, so destroying one platform keeps it.
"""
PREFIX = "io.kaos."
MANAGED = PREFIX + "managed"
KIND = PREFIX + "kind"
PLATFORM = PREFIX + "platform"

# The base image's own: what it was made from, so that a changed recipe or host CA bundle makes a new one.
BASE_IMAGE_KIND = "base-image"
BASE_IMAGE_RECIPE = PREFIX + "base-image.recipe"      # sha256 of the recipe and the host's CA bundle
BASE_IMAGE_SUITE = PREFIX + "base-image.suite"        # the Debian suite, e.g. bookworm
BASE_IMAGE_PACKAGES = PREFIX + "base-image.packages"  # the Debian packages asked for, comma-separated
