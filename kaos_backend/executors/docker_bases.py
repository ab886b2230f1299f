"""The images a bundle's Dockerfile builds FROM, checked against the engine before a build: builds never pull
(these machines reach no registry), and an engine asked for an image it does not have tries to pull it all the
same, failing with a registry's address ("Get https://registry-1.docker.io/v2/: dial tcp: lookup ...") or hanging
on one that does not answer. The Dockerfile is read with dockerfile-parse (the FROM lines, their ARG defaults and
the build's arguments substituted as `docker build` does), not a parser of our own."""
from pathlib import Path
from typing import Dict, List

NOT_AN_IMAGE = "scratch"


def base_images(dockerfile: Path, build_args: Dict[str, str]) -> List[str]:
    """The images the Dockerfile's FROM lines name, in order, `build_args` (BASE_IMAGE) substituted, without the
    build's own stages (`FROM builder` after `FROM ... AS builder`) and `scratch`. Raises OSError when it cannot
    be read."""
    from dockerfile_parse import DockerfileParser

    with open(dockerfile, "rb") as handle:
        parser = DockerfileParser(fileobj=handle, build_args=dict(build_args))
        images = parser.parent_images
        stages = set()
        for instruction in parser.structure:
            if instruction["instruction"] == "FROM":
                words = instruction["value"].split()
                if len(words) >= 3 and words[-2].lower() == "as":
                    stages.add(words[-1].lower())
    return [image for image in images if image and image.lower() not in stages and image != NOT_AN_IMAGE]


def missing_base(client, dockerfile: Path, build_args: Dict[str, str]):
    """The first base image of the Dockerfile that the engine (`client`, a docker.DockerClient) does not have, or
    None (also when the Dockerfile cannot be read or parsed: the build then says what is wrong with it)."""
    import docker.errors

    try:
        images = base_images(dockerfile, build_args)
    except (ImportError, OSError, ValueError, KeyError):  # (an install without dockerfile-parse: the engine says)
        return None
    for image in images:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            return image
    return None


def missing_base_reason(image: str) -> str:
    """The build's reason when its base image is not on the engine."""
    return (f"the base image {image} (FROM) is not on the Docker engine, and builds never pull: load it there, or "
            "build FROM ${BASE_IMAGE} (after ARG BASE_IMAGE), which kaos sets to an image the engine has "
            "(--base-image, KAOS_BASE_IMAGE, else kaos-base-python:bookworm from `kaos-backend base-image`)")
