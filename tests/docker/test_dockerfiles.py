"""The templates' Dockerfiles, read (no engine needed): a base image chosen by ARG BASE_IMAGE, packages in a
virtualenv, and the requirements installed before the code is copied (so a code change keeps that layer)."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO / "templates").glob("*/**/Dockerfile"))


def instructions(path: Path):
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined, comments dropped."""
    joined, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        joined.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return joined

# 1.x's GPU notebook runs on NVIDIA's CUDA runtime image (Ubuntu), its python3 installed from apt in the venv's step
OTHER_BASES = {"notebook-gpu/base/Dockerfile": "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"}


def test_every_template_has_its_dockerfiles():
    assert [str(path.relative_to(REPO / "templates")) for path in DOCKERFILES] == [
        "mnist/model-serve/mnist/Dockerfile", "mnist/model-train/mnist/Dockerfile", "notebook/base/Dockerfile",
        "notebook-gpu/base/Dockerfile", "property-val/model-serve/property-val/Dockerfile",
        "property-val/model-train/property-val/Dockerfile"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda path: str(path.relative_to(REPO / "templates")))
def test_base_image_argument_virtualenv_and_requirements_first(path):
    steps = instructions(path)
    base = OTHER_BASES.get(str(path.relative_to(REPO / "templates")), "python:3.11-slim")
    assert steps[:2] == [("ARG", f"BASE_IMAGE={base}"), ("FROM", "${BASE_IMAGE}")]
    venv = next(index for index, (keyword, arguments) in enumerate(steps)
                if keyword == "RUN" and "python3 -m venv /opt/venv" in arguments)
    assert any(keyword == "ENV" and "PATH=/opt/venv/bin:$PATH" in arguments for keyword, arguments in steps[:venv])
    requirements = next(index for index, (keyword, arguments) in enumerate(steps)
                        if keyword == "COPY" and "requirements.tx" in arguments)
    install = next(index for index, (keyword, arguments) in enumerate(steps)
                   if keyword == "RUN" and "pip install" in arguments)
    code = steps.index(("COPY", ". ."))
    assert venv < requirements < install < code
    assert not any("pip3 install" in arguments for _, arguments in steps)  # never into the image's own Python
