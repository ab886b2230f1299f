"""`kaos template list|get`: purely local, no init needed (against a stand-in templates package)."""
import os
import sys
import types

import pytest

from tests.cli.conftest import one_line

METADATA = [
    {"name": "mnist", "description": "Train an image classification model with the MNIST dataset",
     "input_type": "images"},
    {"name": "notebook", "description": "Deploy a hosted notebook with custom requirements", "input_type": "any"},
]


@pytest.fixture
def templates(tmp_path, monkeypatch):
    root = tmp_path / "kaos_templates"
    train = root / "mnist" / "model-train" / "mnist" / "model" / "train"
    train.parent.mkdir(parents=True)
    train.write_text("#!/usr/bin/env python\n")
    os.chmod(train, 0o755)
    (root / "mnist" / "data" / "features").mkdir(parents=True)
    (root / "notebook").mkdir()
    (root / "notebook" / "Dockerfile").write_text("FROM jupyter\n")
    (root / "notebook" / "__pycache__").mkdir()
    (root / "notebook" / "__pycache__" / "x.pyc").write_bytes(b"")
    package = types.ModuleType("kaos_templates")
    package.TEMPLATES_DIR = root
    package.load_metadata = lambda: [dict(item) for item in METADATA]
    monkeypatch.setitem(sys.modules, "kaos_templates", package)
    return root


def test_list(kaos, templates, project):
    result = kaos("template", "list")
    assert result.exit_code == 0, result.output
    assert "| ind | name     | description" in result.output
    assert "| 0   | mnist    | Train an image classification model with the MNIST dataset | images" in result.output
    assert "| 1   | notebook |" in result.output
    assert not (project / ".kaos").exists()


def test_get_by_name_keeps_modes(kaos, templates, project):
    result = kaos("template", "get", "-n", "mnist")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Info - Successfully loaded mnist template"
    train = project / "templates" / "mnist" / "model-train" / "mnist" / "model" / "train"
    assert os.access(train, os.X_OK)
    assert (project / "templates" / "mnist" / "data" / "features").is_dir()
    assert not (project / ".kaos").exists()


def test_get_by_index_skips_pycache(kaos, templates, project):
    result = kaos("template", "get", "-i", "1")
    assert result.exit_code == 0, result.output
    assert "Successfully loaded notebook template" in result.output
    assert (project / "templates" / "notebook" / "Dockerfile").is_file()
    assert not (project / "templates" / "notebook" / "__pycache__").exists()


def test_get_into_out_dir(kaos, templates, project):
    result = kaos("template", "get", "-n", "notebook", "-o", "somewhere/deeper")
    assert result.exit_code == 0, result.output
    assert (project / "somewhere" / "deeper" / "templates" / "notebook" / "Dockerfile").is_file()


@pytest.mark.parametrize("index", ["2", "-1"])
def test_bad_index(kaos, templates, index):
    assert one_line(kaos("template", "get", "-i", index)) == \
        f"Error - Index {index} does not exist... Run `kaos template list` again"


def test_unknown_name(kaos, templates, project):
    assert one_line(kaos("template", "get", "-n", "nope")) == \
        "Error - template nope does not exist... Run `kaos template list` again"
    assert not (project / "templates").exists()


def test_existing_target_kept_on_no(kaos, templates, project):
    assert kaos("template", "get", "-n", "notebook").exit_code == 0
    mine = project / "templates" / "notebook" / "mine.txt"
    mine.write_text("keep me")
    result = kaos("template", "get", "-n", "notebook", input="\n")  # default is No
    assert result.exit_code == 0
    assert "Warning - ./templates/notebook already exists. Overwrite? [y/N]" in result.output
    assert "Info - Kept the existing ./templates/notebook" in result.output
    assert mine.read_text() == "keep me"


def test_existing_target_replaced_on_yes_or_force(kaos, templates, project):
    assert kaos("template", "get", "-n", "notebook").exit_code == 0
    mine = project / "templates" / "notebook" / "mine.txt"
    mine.write_text("replace me")
    result = kaos("template", "get", "-n", "notebook", input="y\n")
    assert result.exit_code == 0 and "Successfully loaded notebook template" in result.output
    assert not mine.exists() and (project / "templates" / "notebook" / "Dockerfile").is_file()
    mine.write_text("replace me")
    forced = kaos("template", "get", "-n", "notebook", "-f")
    assert forced.exit_code == 0 and "Overwrite" not in forced.output and not mine.exists()
    assert sorted(p.name for p in (project / "templates").iterdir()) == ["notebook"]


def test_mutually_exclusive_and_missing(kaos, templates):
    both = kaos("template", "get", "-n", "mnist", "-i", "0")
    assert both.exit_code == 2
    assert "Illegal usage: --name is mutually exclusive with --ind" in both.output
    assert one_line(kaos("template", "get")) == "Error - Missing either --name or --ind as arguments"


def test_help_notes_mutual_exclusion(kaos):
    text = kaos("template", "get", "--help").output
    assert "[NOTE: Mutually exclusive with --ind]" in " ".join(text.split())


def test_the_real_templates_package(kaos, project):
    """The repository's templates/ (installed or from the source tree) lists mnist."""
    result = kaos("template", "list")
    if result.exit_code != 0 and "not installed" in result.output:
        pytest.skip("kaos_templates not available")
    assert result.exit_code == 0, result.output
    assert "mnist" in result.output
