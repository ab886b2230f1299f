"""Job and pipeline states, with the names and numbers of the original (Pachyderm's enums)."""
from enum import Enum


class JobState(str, Enum):
    JOB_STARTING = "JOB_STARTING"
    JOB_RUNNING = "JOB_RUNNING"
    JOB_FAILURE = "JOB_FAILURE"
    JOB_SUCCESS = "JOB_SUCCESS"
    JOB_KILLED = "JOB_KILLED"
    JOB_MERGING = "JOB_MERGING"

    @property
    def number(self) -> int:
        return _JOB_NUMBERS[self]

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.JOB_FAILURE, JobState.JOB_SUCCESS, JobState.JOB_KILLED)

    def __str__(self) -> str:
        return self.value


class PipelineState(str, Enum):
    PIPELINE_STARTING = "PIPELINE_STARTING"
    PIPELINE_RUNNING = "PIPELINE_RUNNING"
    PIPELINE_RESTARTING = "PIPELINE_RESTARTING"
    PIPELINE_FAILURE = "PIPELINE_FAILURE"
    PIPELINE_PAUSED = "PIPELINE_PAUSED"
    PIPELINE_STANDBY = "PIPELINE_STANDBY"

    @property
    def number(self) -> int:
        return _PIPELINE_NUMBERS[self]

    def __str__(self) -> str:
        return self.value


_JOB_NUMBERS = {state: number for number, state in enumerate(JobState)}
_PIPELINE_NUMBERS = {state: number for number, state in enumerate(PipelineState)}
