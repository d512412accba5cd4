"""Watching a scan: PNG snapshots after every frame (headless)."""

from .snapshots import SnapshotWriter

__all__ = ["SnapshotWriter"]
