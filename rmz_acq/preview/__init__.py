"""Watching a scan: orthogonal views, PNG snapshots after every frame, the Qt viewer.

Import the parts you need (``rmz_acq.preview.snapshots``,
``rmz_acq.preview.viewer``); this package imports nothing heavy on its own.
"""
