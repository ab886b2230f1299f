"""Container images kaos makes for itself, with no container registry: the base image builds start from."""
