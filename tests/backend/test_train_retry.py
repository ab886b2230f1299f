"""When a deploy of a combination of code, data and hyperparameters trained already starts a new train job
(control/train_schedule.py `tried_again`; README, How it runs): only after a failure or a kill, and only with other
limits. The DOCKER platform's case (a limit the engine refused) is tests/docker/test_attack_findings.py's."""
import pytest

from kaos_backend.control.train_schedule import tried_again
from kaos_backend.models import Job

REFUSED = {"cpu": 100000.0, "memory": None, "gpu": 0}


@pytest.mark.parametrize("state", ["JOB_FAILURE", "JOB_KILLED"])
def test_a_training_that_did_not_succeed_is_tried_again_with_other_limits_only(state):
    previous = Job(state=state, resources=REFUSED)
    assert tried_again(previous, {"cpu": 1.0, "memory": None, "gpu": 0})
    assert tried_again(previous, None)  # no limits at all is other limits too
    assert not tried_again(previous, {"cpu": 100000.0})  # the same limits, however spelled, start nothing
    assert not tried_again(previous, dict(REFUSED))


def test_a_training_without_limits_is_tried_again_once_limits_are_given():
    previous = Job(state="JOB_FAILURE", resources=None)
    assert not tried_again(previous, {"cpu": None, "memory": None, "gpu": 0})
    assert tried_again(previous, {"memory": "1Gi"})


@pytest.mark.parametrize("state", ["JOB_SUCCESS", "JOB_RUNNING", "JOB_STARTING"])
def test_a_successful_or_unfinished_training_is_not_repeated_whatever_the_limits(state):
    assert not tried_again(Job(state=state, resources=REFUSED), {"cpu": 1.0})
