"""`kaos template list|get`: purely local, no `kaos init` needed."""
import os
from pathlib import Path

import click

from kaos_cli import render
from kaos_cli.completion import complete_templates
from kaos_cli.errors import KaosError
from kaos_cli.options import index_option, name_option, require_one
from kaos_cli.output import emit, output_option
from kaos_cli.state import check_index

IGNORED = ("__pycache__", "*.pyc", ".DS_Store")


def _templates_package():
    """The `kaos_templates` package (installed, or the source tree's `templates/` beside `kaos_cli/`)."""
    try:
        import kaos_templates
        return kaos_templates
    except ImportError:
        pass
    import importlib.util
    import sys

    source = Path(__file__).resolve().parents[2] / "templates"
    if (source / "__init__.py").is_file():
        spec = importlib.util.spec_from_file_location("kaos_templates", source / "__init__.py",
                                                      submodule_search_locations=[str(source)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["kaos_templates"] = module
        spec.loader.exec_module(module)
        return module
    raise KaosError("The kaos templates are not installed (package kaos_templates missing)")


def load_templates():
    """`(templates directory, metadata list)`; metadata entries have `name`, `description`, `input_type`."""
    package = _templates_package()
    directory = getattr(package, "TEMPLATES_DIR", None) or Path(package.__file__).parent
    return Path(directory), list(package.load_metadata())


@click.group(short_help="Retrieves templates for getting started")
def template():
    """Retrieves templates for getting started."""


@template.command("list", short_help="List the available templates")
@output_option
def list_templates():
    """List the available templates. With -o json|yaml: the templates' metadata, a list of `{"name",
    "description", "input_type"}` (no backend involved)."""
    _, metadata = load_templates()
    if emit([{key: item.get(key) for key in ("name", "description", "input_type")} for item in metadata]):
        return
    rows = [[index, item.get("name"), item.get("description"), item.get("input_type")]
            for index, item in enumerate(metadata)]
    render.print_table(["ind", "name", "description", "input_type"], rows)


@template.command(short_help="Copy a template to ./templates/<name>")
@name_option("-n", "--name", help="Template name", shell_complete=complete_templates)
@index_option(help="Template index from `kaos template list`")
@click.option("-o", "--out_dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Directory that receives templates/<name> (created if missing)")
@click.option("-f", "--force", is_flag=True, help="Replace an existing templates/<name> without asking")
def get(name, ind, out_dir, force):
    """Copy a template to OUT_DIR/templates/<name>."""
    require_one("name", name, "ind", ind)
    directory, metadata = load_templates()
    names = [item.get("name") for item in metadata]
    if ind is not None:
        check_index(ind, len(names), "template")
        name = names[ind]
    source = directory / name
    if name not in names or not source.is_dir():
        raise KaosError(f"template {name} does not exist... Run `kaos template list` again")

    shown = os.path.join(out_dir, "templates", name)
    target = Path(shown)
    if target.exists():
        if not force and not render.confirm(f"{shown} already exists. Overwrite?"):
            render.info(f"Kept the existing {shown}")
            return
    _copy_tree(source, target)
    render.info(f"Successfully loaded {name} template")


def _copy_tree(source: Path, target: Path) -> None:
    """Copy `source` to `target` (keeping modes), replacing `target` only once the copy is complete."""
    import shutil
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.copytree(source, staging / target.name, ignore=shutil.ignore_patterns(*IGNORED))
        if target.exists() or target.is_symlink():
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        os.replace(staging / target.name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
