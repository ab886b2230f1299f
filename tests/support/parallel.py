"""How the suite runs on several processes (pytest-xdist; `make test` runs `-n 2 --dist loadgroup
--no-loadscope-reorder`), registered for the whole suite in tests/conftest.py.

Every test gets an `xdist_group` mark, so that xdist's loadgroup scheduler hands whole groups to a worker:

    a test file is one group, so its module fixtures are made once and its tests run in their order;
    the files that use one of SHARED_FIXTURES (a costly session fixture: a platform with a notebook virtualenv
    built, a built wheel, a template's image) are one group together, so that fixture is made on one worker.

On a worker the tests are then ordered by group, the groups of SLOW_FIRST first (in that order), then the others in
collection order: xdist hands the groups out in that order (with --no-loadscope-reorder; its default puts the
groups with most tests first), so the longest ones do not start last and leave one worker alone at the end.
A serial run (no xdist) is left as it is.

On a worker, a check after xdist's own hook makes sure the groups reached xdist: pytest 9.2 ignores how
pytest-xdist 3.8 tags a test with its group (github.com/pytest-dev/pytest-xdist/issues/1386: every test is
then scheduled alone, and module fixtures are made on both workers), and its test items made by schemathesis
all have one node id; either would otherwise pass unnoticed (hence `pytest<9.2` in requirements-dev.txt).
"""
import os
from collections import Counter
from typing import Dict, List

import pytest

# A session fixture that is worth making once: the files that use it (directly or through other fixtures) are
# one group. The group is named after the fixtures it holds.
SHARED_FIXTURES = ("notebook_platform", "front_backend", "dists", "template_layers")
# Groups known to take longest (minutes each, most of it waiting on builds, notebooks and culling), slowest
# first. Only an order: a group missing here runs after them, in collection order.
SLOW_FIRST = (
    "tests/kubernetes/test_notebooks.py",
    "template_layers",
    "notebook_platform",
    "tests/notebooks/test_idle_culling.py",
    "dists",
    "tests/docker/test_base_image.py",
)
GROUP_MARK = "xdist_group"


def _file(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def groups(items: List[pytest.Item]) -> Dict[str, str]:
    """{test file: its group's name}: the file itself, or the SHARED_FIXTURES that tie it to other files
    (joined with '+', when one file ties two of them together)."""
    uses: Dict[str, set] = {}
    for item in items:
        uses.setdefault(_file(item), set()).update(set(SHARED_FIXTURES) & set(getattr(item, "fixturenames", ())))
    # fixtures used by one file together are one group: merge until no file spans two groups
    group_of = {fixture: frozenset([fixture]) for fixture in SHARED_FIXTURES}
    for used in uses.values():
        merged = frozenset().union(*(group_of[fixture] for fixture in used))
        for fixture in merged:
            group_of[fixture] = merged
    return {path: "+".join(sorted(frozenset().union(*(group_of[f] for f in used)))) if used else path
            for path, used in uses.items()}


def _rank(group: str) -> int:
    for rank, slow in enumerate(SLOW_FIRST):
        if slow in group.split("+"):
            return rank
    return len(SLOW_FIRST)


def _on_worker() -> bool:
    return bool(os.environ.get("PYTEST_XDIST_WORKER"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Before xdist's hook (it reads the marks on the worker to tag the tests with their group)."""
    if not _on_worker():
        return
    group_of = groups(items)
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group_of[_file(item)]))
    order = {id(item): index for index, item in enumerate(items)}
    items.sort(key=lambda item: (_rank(group_of[_file(item)]), order[id(item)]))


class SchedulingCheck:
    """After xdist's hook (trylast): every node id unique, and with --dist loadgroup carrying its group."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items):
        duplicated = [nodeid for nodeid, count in Counter(item.nodeid for item in items).items() if count > 1]
        if duplicated:
            raise pytest.UsageError(f"{len(duplicated)} node ids are not unique, which xdist cannot schedule (e.g. "
                                    f"{duplicated[0]}): is pytest 9.2 installed? (see requirements-dev.txt)")
        if config.getoption("dist", None) == "loadgroup":
            ungrouped = [item.nodeid for item in items if "@" not in item.nodeid.rsplit("]", 1)[-1]]
            if ungrouped:
                raise pytest.UsageError(
                    f"xdist did not tag {len(ungrouped)} tests with their group (e.g. {ungrouped[0]}), so --dist "
                    "loadgroup would split files: pytest 9.2 with pytest-xdist 3.8 does so "
                    "(github.com/pytest-dev/pytest-xdist/issues/1386; see requirements-dev.txt)")


def pytest_configure(config):
    if _on_worker():
        config.pluginmanager.register(SchedulingCheck(), "kaos-xdist-scheduling-check")
