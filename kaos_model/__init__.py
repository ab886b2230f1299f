"""Shared vocabulary of kaos: states, id formats and wire dataclasses (standard library only)."""
from kaos_model.states import JobState, PipelineState
from kaos_model import ids

__all__ = ["JobState", "PipelineState", "ids"]
