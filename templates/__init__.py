"""kaos_templates: the bundles that `kaos template get` copies to ./templates/<name>.

metadata.json lists them (name, description, input_type) in the order `kaos template list` shows.
_generate.py regenerates their data files; it is not part of any template.
"""
import json
from pathlib import Path

TEMPLATES_DIR = Path(__file__).parent


def load_metadata() -> list:
    """The entries of metadata.json: [{"name", "description", "input_type"}, ...]."""
    with open(TEMPLATES_DIR / "metadata.json", encoding="utf-8") as handle:
        return json.load(handle)
