"""File formats: OME-TIFF stacks with a true z for every plane."""

from .ome_tiff import FrameStackWriter, ZStack, read_zstack, write_zstack

__all__ = ["FrameStackWriter", "ZStack", "read_zstack", "write_zstack"]
