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

When the workers have collected, a check on the controller makes sure the groups reached xdist: pytest 9.2 ignores how
pytest-xdist 3.8 tags a test with its group (github.com/pytest-dev/pytest-xdist/issues/1386: every test is
then scheduled alone, and module fixtures are made on both workers), and its test items made by schemathesis
all have one node id; either would otherwise pass unnoticed (hence `pytest<9.2` in requirements-dev.txt).
"""
import os
from collections import Counter
from typing import Dict, List, Optional

import pytest

# A session fixture that is worth making once: the files that use it (directly or through other fixtures) are
# one group. The group is named after the fixtures it holds.
SHARED_FIXTURES = ("notebook_platform", "front_backend", "dists", "template_layers")
# The groups that take longest, longest first (a CI run's sums of their tests' durations, under load: 11, 7, 5,
# then 3 to 2 minutes each; most of it waiting on builds, notebooks and culling). Only an order: a group missing
# here runs after them, in collection order.
SLOW_FIRST = (
    "template_layers",
    "dists",
    "notebook_platform",
    "tests/e2e/test_serve.py",
    "tests/kubernetes/test_notebooks.py",
    "tests/docker/test_base_image.py",
    "tests/notebooks/test_idle_culling.py",
    "tests/kubernetes/test_attack_findings2.py",
    "tests/backend/test_supervision.py",
    "tests/e2e/test_train.py",
    "tests/cli/test_redeploy.py",
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


def scheduling_problem(ids: List[str], loadgroup: bool) -> Optional[str]:
    """What would make xdist run the tests of a worker's collection (its node ids) wrongly, or None."""
    duplicated = [nodeid for nodeid, count in Counter(ids).items() if count > 1]
    if duplicated:
        return (f"{len(duplicated)} node ids are not unique, so xdist would run one of those tests in place of the "
                f"others (e.g. {duplicated[0]}): pytest 9.2 does that to schemathesis' tests; see requirements-dev.txt")
    ungrouped = [nodeid for nodeid in ids if "@" not in nodeid.rsplit("]", 1)[-1]]
    if loadgroup and ungrouped:
        return (f"xdist did not tag {len(ungrouped)} tests with their xdist_group (e.g. {ungrouped[0]}), so "
                "--dist loadgroup would split test files: pytest 9.2 with pytest-xdist 3.8 does that "
                "(github.com/pytest-dev/pytest-xdist/issues/1386); see requirements-dev.txt")
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """On xdist's controller, each worker's collection: a problem stops the run before any test runs."""
    problem = scheduling_problem(ids, node.config.getoption("dist") == "loadgroup")
    if problem:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)
