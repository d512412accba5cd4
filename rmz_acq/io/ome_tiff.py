"""OME-TIFF stacks with a true z for every plane.

Frames are streamed to disk one TIFF page at a time as they arrive, each page
carrying its own z in a small JSON description, so a scan that dies half way
leaves a readable multi-page TIFF with every frame taken.  Closing the writer
rewrites the file as an OME-TIFF (``PhysicalSizeX/Y/Z``, one ``Plane`` with
``PositionZ`` per frame) that Fiji (Bio-Formats), napari and tifffile read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray

from ..errors import DataWarning, RmzError

__all__ = ["FrameStackWriter", "ZStack", "read_zstack", "write_zstack"]

_PAGE_TAG = "rmz_acq.frame"


@dataclass(frozen=True)
class ZStack:
    """Planes ``(z, y, x)`` with the z of each plane in micrometres."""

    data: NDArray[Any]
    z_um: NDArray[np.float64] | None
    pixel_size_um: float | None
    z_step_um: float | None = None
    exposure_ms: NDArray[np.float64] | None = None


def _ome_metadata(
    n_planes: int,
    z_um: NDArray[np.float64],
    pixel_size_um: float,
    z_step_um: float | None,
    exposure_ms: NDArray[np.float64] | None,
    name: str,
) -> dict[str, Any]:
    plane: dict[str, Any] = {
        "PositionZ": [float(z) for z in z_um],
        "PositionZUnit": ["µm"] * n_planes,
    }
    if exposure_ms is not None:
        plane["ExposureTime"] = [float(e) for e in exposure_ms]
        plane["ExposureTimeUnit"] = ["ms"] * n_planes
    meta: dict[str, Any] = {
        "axes": "ZYX",
        "Name": name,
        "PhysicalSizeX": float(pixel_size_um),
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": float(pixel_size_um),
        "PhysicalSizeYUnit": "µm",
        "Plane": plane,
    }
    if z_step_um is not None:
        meta["PhysicalSizeZ"] = float(z_step_um)
        meta["PhysicalSizeZUnit"] = "µm"
    return meta


def write_zstack(
    path: str | Path,
    data: NDArray[Any],
    z_um: NDArray[np.floating] | list[float],
    pixel_size_um: float,
    *,
    z_step_um: float | None = None,
    exposure_ms: NDArray[np.floating] | list[float] | None = None,
    name: str = "rmz_acq",
) -> Path:
    """Write a whole ``(z, y, x)`` stack as OME-TIFF (atomically)."""
    path = Path(path)
    data = np.asarray(data)
    z = np.asarray(z_um, dtype=np.float64)
    if data.ndim != 3 or len(z) != data.shape[0]:
        raise ValueError(f"stack of shape {data.shape} needs one z per plane, got {len(z)}")
    exposure = None if exposure_ms is None else np.asarray(exposure_ms, np.float64)
    meta = _ome_metadata(data.shape[0], z, pixel_size_um, z_step_um, exposure, name)
    tmp = path.with_name(path.name + ".partial")
    try:
        tifffile.imwrite(tmp, data, ome=True, metadata=meta, photometric="minisblack")
        os.replace(tmp, path)
    except BaseException:  # a full disk leaves no half-written file behind
        tmp.unlink(missing_ok=True)
        raise
    return path


class FrameStackWriter:
    """Append frames to ``path`` as they arrive; OME-TIFF once closed.

    Parameters
    ----------
    path
        Output file, conventionally ``*.ome.tif``.
    pixel_size_um
        Pixel size at the sample.
    z_step_um
        Nominal z step (``PhysicalSizeZ``) for an evenly spaced stack; leave
        ``None`` for sparse frames, whose z is in each plane's ``PositionZ``.
    """

    def __init__(
        self,
        path: str | Path,
        pixel_size_um: float,
        *,
        z_step_um: float | None = None,
        name: str = "rmz_acq",
    ) -> None:
        self.path = Path(path)
        self.pixel_size_um = float(pixel_size_um)
        self.z_step_um = z_step_um
        self.name = name
        self.z_um: list[float] = []
        self.exposure_ms: list[float] = []
        self._shape: tuple[int, ...] | None = None
        self._dtype: np.dtype[Any] | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tif: tifffile.TiffWriter | None = tifffile.TiffWriter(self.path)
        self._closed = False

    def __len__(self) -> int:
        return len(self.z_um)

    def append(
        self, frame: NDArray[Any], z_um: float, *, exposure_ms: float | None = None, **extra: Any
    ) -> None:
        """Write one frame now (flushed to disk before returning)."""
        if self._tif is None:
            raise RuntimeError(f"writer for {self.path} is closed")
        frame = np.asarray(frame)
        if self._shape is None:
            self._shape, self._dtype = frame.shape, frame.dtype
        elif frame.shape != self._shape or frame.dtype != self._dtype:
            raise ValueError(
                f"frame {len(self)} has shape {frame.shape} {frame.dtype}; the stack "
                f"holds {self._shape} {self._dtype}"
            )
        # Each page carries what a reconstruction needs (z, pixel size), so a
        # file cut short by a crash can still be reconstructed.
        record = {
            _PAGE_TAG: len(self),
            "PositionZ_um": float(z_um),
            "PhysicalSizeX_um": self.pixel_size_um,
            **extra,
        }
        if exposure_ms is not None:
            record["ExposureTime_ms"] = float(exposure_ms)
        self._tif.write(
            frame,
            description=json.dumps(record),
            metadata=None,
            photometric="minisblack",
            contiguous=False,
        )
        self._tif.filehandle.flush()
        os.fsync(self._tif.filehandle.fileno())
        self.z_um.append(float(z_um))
        self.exposure_ms.append(float("nan") if exposure_ms is None else float(exposure_ms))

    def intact(self) -> bool:
        """Whether ``path`` is still the file being written (not deleted or replaced)."""
        if self._tif is None:
            return self.path.is_file()
        try:
            on_disk = os.stat(self.path)
        except OSError:
            return False
        return on_disk.st_ino == os.fstat(self._tif.filehandle.fileno()).st_ino

    def close(self) -> Path:
        """Finish the file as an OME-TIFF.  Safe to call twice."""
        if self._closed:
            return self.path
        self._closed = True
        if self._tif is not None:
            self._tif.close()
            self._tif = None
        if not self.z_um:
            # Nothing was taken: leave no empty TIFF behind.
            self.path.unlink(missing_ok=True)
            return self.path
        data = tifffile.imread(self.path, key=range(len(self.z_um)))
        if data.ndim == 2:
            data = data[None]
        exposure = np.asarray(self.exposure_ms)
        write_zstack(
            self.path,
            data,
            self.z_um,
            self.pixel_size_um,
            z_step_um=self.z_step_um,
            exposure_ms=None if np.isnan(exposure).any() else exposure,
            name=self.name,
        )
        return self.path

    def __enter__(self) -> FrameStackWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _ome_planes(ome_xml: str) -> tuple[list[float] | None, dict[str, float], list[float]]:
    root = ET.fromstring(ome_xml)
    ns = {"ome": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
    prefix = "ome:" if ns else ""
    pixels = root.find(f".//{prefix}Pixels", ns)
    if pixels is None:
        return None, {}, []
    sizes: dict[str, float] = {
        key: float(pixels.attrib[key])
        for key in ("PhysicalSizeX", "PhysicalSizeZ")
        if key in pixels.attrib
    }
    planes = pixels.findall(f"{prefix}Plane", ns)
    planes.sort(key=lambda p: int(p.attrib.get("TheZ", 0)))
    z = [float(p.attrib["PositionZ"]) for p in planes if "PositionZ" in p.attrib]
    exposure = [float(p.attrib["ExposureTime"]) for p in planes if "ExposureTime" in p.attrib]
    return (z if len(z) == len(planes) and z else None), sizes, exposure


def read_zstack(path: str | Path) -> ZStack:
    """Read a stack written here, by Micro-Manager, or any 3D (OME-)TIFF.

    The z of each plane comes from OME ``Plane@PositionZ``, or from the
    per-page records of an unfinished stream (which also carry the pixel
    size); ``z_um`` is ``None`` when the file carries neither.  A file cut
    short (a crash while writing) gives its intact frames and a
    `DataWarning` saying how many were lost.

    Raises
    ------
    RmzError
        The file is missing, unreadable, or not a single-channel 3D stack.
    """
    path = Path(path)
    if not path.is_file():
        raise RmzError(f"{str(path)!r} does not exist")
    z: list[float] | None = None
    sizes: dict[str, float] = {}
    exposure: list[float] = []
    dropped = 0
    try:
        with _tifffile_log() as complaints, tifffile.TiffFile(path) as tif:
            data = None
            if tif.is_ome and tif.ome_metadata:
                z, sizes, exposure = _ome_planes(tif.ome_metadata)
                with contextlib.suppress(ValueError, OSError, IndexError):
                    data = tif.series[0].asarray()
            if data is None:
                pages, dropped = _intact_pages(tif)
                if not pages:
                    raise RmzError(f"{str(path)!r} holds no readable frame (damaged or empty TIFF)")
                data = np.stack([array for array, _ in pages])
                records = [record for _, record in pages]
                if z is None and all(r is not None for r in records):
                    z = [float(r["PositionZ_um"]) for r in records if r is not None]
                pixels = {r.get("PhysicalSizeX_um") for r in records if r is not None}
                pixels.discard(None)
                if "PhysicalSizeX" not in sizes and len(pixels) == 1:
                    sizes["PhysicalSizeX"] = float(pixels.pop())
                pixel = _resolution_um(tif)
                if pixel is not None and "PhysicalSizeX" not in sizes:
                    sizes["PhysicalSizeX"] = pixel
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise RmzError(f"cannot read {str(path)!r} as TIFF: {exc}") from exc
    data = np.squeeze(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise RmzError(
            f"{str(path)!r} holds an array of shape {data.shape}; expected one channel (z, y, x)"
        )
    if z is not None and len(z) > data.shape[0]:  # OME planes of a file cut short
        z = z[: data.shape[0]]
    if z is not None and len(z) != data.shape[0]:
        z = None
    if dropped or complaints:
        lost = f"at least {dropped} frame(s) lost, " if dropped else ""
        detail = f" ({complaints[0]})" if complaints else ""
        warnings.warn(
            f"{path} is damaged (cut short by a crash?): {lost}{data.shape[0]} intact "
            f"frame(s) read{detail}",
            DataWarning,
            stacklevel=2,
        )
    return ZStack(
        data=data,
        z_um=None if z is None else np.asarray(z, np.float64),
        pixel_size_um=sizes.get("PhysicalSizeX"),
        z_step_um=sizes.get("PhysicalSizeZ"),
        exposure_ms=np.asarray(exposure) if len(exposure) == data.shape[0] else None,
    )


@contextlib.contextmanager
def _tifffile_log() -> Iterator[list[str]]:
    """Collect what tifffile logs (instead of printing it) while reading."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(" ".join(record.getMessage().split()))

    logger = logging.getLogger("tifffile")
    handler = _Collect(logging.WARNING)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _intact_pages(tif: tifffile.TiffFile) -> tuple[list[tuple[NDArray[Any], Any]], int]:
    """Pages read one by one up to the first damaged one; and how many were not read."""
    pages: list[tuple[NDArray[Any], Any]] = []
    total = len(tif.pages)
    for index in range(total):
        try:
            page = tif.pages[index]
            array = page.asarray()  # type: ignore[union-attr]
        except (ValueError, OSError, IndexError, tifffile.TiffFileError):
            break
        if pages and array.shape != pages[0][0].shape:
            break
        pages.append((array, _page_record(page)))
    return pages, total - len(pages)


def _page_record(page: Any) -> dict[str, Any] | None:
    try:
        record = json.loads(page.description)
    except (ValueError, TypeError, AttributeError):
        return None
    return record if isinstance(record, dict) and "PositionZ_um" in record else None


def _resolution_um(tif: tifffile.TiffFile) -> float | None:
    """Pixel size from an ImageJ-style TIFF (resolution in pixels per micron)."""
    page = tif.pages[0]
    tag = page.tags.get("XResolution")  # type: ignore[union-attr]
    ij = tif.imagej_metadata or {}
    if tag is None or ij.get("unit") not in ("micron", "um", "µm", "\\u00B5m"):
        return None
    numerator, denominator = tag.value
    return float(denominator) / float(numerator) if numerator else None
