"""Adaptive acquisition: plan, stop rules, the scan controller and its report."""

from .controller import AcquiredFrame, AdaptiveScan, ScanSettings, VolumeUpdate
from .plan import PlaneOrder, ScanPlan, order_planes
from .report import FrameRecord, ScanReport
from .stop_rules import (
    FrobeniusChange,
    MaxFrames,
    RelativeChange,
    ScanProgress,
    StopReason,
    TimeBudget,
    first_stop,
)

__all__ = [
    "AcquiredFrame",
    "AdaptiveScan",
    "FrameRecord",
    "FrobeniusChange",
    "MaxFrames",
    "PlaneOrder",
    "RelativeChange",
    "ScanPlan",
    "ScanProgress",
    "ScanReport",
    "ScanSettings",
    "StopReason",
    "TimeBudget",
    "VolumeUpdate",
    "first_stop",
    "order_planes",
]
