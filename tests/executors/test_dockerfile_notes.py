"""What of a bundle's Dockerfile LOCAL does not apply (executors/dockerfile_notes.py): nothing of the templates'
train and serve Dockerfiles (their FROM, ENV, virtualenv and pip steps have LOCAL equivalents), every other RUN and
ENV as written. The build log's line is tests/e2e/test_train.py's."""
from pathlib import Path

import pytest

from kaos_backend.executors.dockerfile_notes import MAX_SHOWN, note, not_applied

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_DOCKERFILES = sorted(REPO.glob("templates/*/model-*/*/Dockerfile"))


@pytest.mark.parametrize("dockerfile", TEMPLATE_DOCKERFILES, ids=lambda path: str(path.relative_to(REPO)))
def test_the_templates_train_and_serve_dockerfiles_need_no_note(dockerfile):
    assert not_applied(dockerfile) == []


def test_other_runs_and_settings_are_named_as_written(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text((REPO / "templates/mnist/model-train/mnist/Dockerfile").read_text()
                          + "RUN apt-get update \\\n && apt-get install -y libgomp1\n"
                          + "ENV MY_SETTING=42\nENV PYTHONUNBUFFERED=1 OTHER=x\nENV LEGACY value\n"
                          + "RUN pip install numpy\nRUN chmod +x train && ./prepare.sh\n"
                          + "RUN echo " + "x" * 300 + "\n")
    assert not_applied(dockerfile) == [
        "RUN apt-get update && apt-get install -y libgomp1", "ENV MY_SETTING=42", "ENV PYTHONUNBUFFERED=1 OTHER=x",
        "ENV LEGACY value", "RUN pip install numpy", "RUN chmod +x train && ./prepare.sh",
        "RUN echo " + "x" * (MAX_SHOWN - len("RUN echo ") - 3) + "..."]
    [line] = note(dockerfile)
    assert line.startswith("kaos: LOCAL builds a virtualenv of the bundle's requirements files; these instructions "
                           "of its Dockerfile are not applied here (a DOCKER or KUBERNETES platform runs them): "
                           "RUN apt-get update && apt-get install -y libgomp1; ENV MY_SETTING=42; ")


def test_a_dockerfile_that_cannot_be_read_gives_no_note(tmp_path):
    assert note(tmp_path / "absent") == []
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00RUN \\\n")
    assert note(tmp_path / "binary") == []


def test_a_heredoc_and_the_exec_form_are_read_as_docker_reads_them(tmp_path):
    """An attacker's finding: a heredoc's body came out as instructions (`APT-GET update; ...; EOF`) and the exec
    form of a handled step (`RUN ["chmod", "+x", "train"]`) was listed."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM python:3.11-slim\nRUN <<EOF\napt-get update\napt-get install -y vim\nEOF\n'
                          'RUN ["apt-get", "install", "-y", "jq"]\nRUN ["chmod", "+x", "train"]\n')
    assert not_applied(dockerfile) == ["RUN <<EOF", 'RUN ["apt-get", "install", "-y", "jq"]']
