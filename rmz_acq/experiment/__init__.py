"""Experiments: adaptive volumes at every position and time point of a useq sequence."""

from .report import ExperimentReport, VolumeRecord
from .runner import Experiment, ExperimentSignals, ScanStarted, volume_folder
from .sequence import ExperimentPlan, PositionPlan, load_sequence, plan_experiment

__all__ = [
    "Experiment",
    "ExperimentPlan",
    "ExperimentReport",
    "ExperimentSignals",
    "PositionPlan",
    "ScanStarted",
    "VolumeRecord",
    "load_sequence",
    "plan_experiment",
    "volume_folder",
]
