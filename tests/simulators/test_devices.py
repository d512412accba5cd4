"""The simulated devices through a real core, as a user's scripts drive them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import useq
from pymmcore_plus import CMMCorePlus

from rmz_acq.errors import ConfigError
from rmz_acq.hardware import light_path_open, load_core, loaded_python_device
from simulators.devices import SimulatedFocusStage, StageLimitError
from tests.conftest import SHIPPED_CONFIGS, SMALL_BEADS


def _snap(core: CMMCorePlus) -> np.ndarray:
    core.snapImage()
    return np.asarray(core.getImage())


def test_closed_shutter_gives_dark_frames(small_core: CMMCorePlus) -> None:
    small_core.setPosition(2.0)
    small_core.setShutterOpen(False)
    dark = _snap(small_core).astype(float)
    small_core.setShutterOpen(True)
    lit = _snap(small_core).astype(float)
    offset = float(small_core.getProperty("Camera", "Offset"))
    gain = float(small_core.getProperty("Camera", "Gain"))
    read_noise = float(small_core.getProperty("Camera", "ReadNoiseE"))
    assert dark.mean() == pytest.approx(offset, abs=0.1)
    assert dark.std() == pytest.approx(np.hypot(read_noise * gain, 0.29), rel=0.15)
    assert lit.mean() > offset + 5 and lit.max() > offset + 100


def test_stage_refuses_moves_outside_its_limits(small_core: CMMCorePlus) -> None:
    small_core.setPosition(1.0)
    for target in (-1.5, 5.01, float("nan")):
        with pytest.raises(StageLimitError, match="did not move"):
            small_core.setPosition(target)
        assert small_core.getPosition() == pytest.approx(1.0)


def test_positioning_error_shows_in_measured_not_commanded_z(
    make_config: Callable[..., Path],
) -> None:
    core = load_core(make_config(**SMALL_BEADS, Z__PositionErrorSigmaUm=0.2, Z__Seed=4))
    stage = loaded_python_device(core, "Z")
    assert isinstance(stage, SimulatedFocusStage)
    errors = []
    for target in (0.0, 1.0, 2.5, 4.0):
        core.setPosition(target)
        assert stage.commanded_um == target
        errors.append(core.getPosition() - target)
    assert np.std(errors) > 0.05
    assert np.all(np.abs(errors) < 1.0)


def test_drift_moves_the_focus_slowly(make_config: Callable[..., Path]) -> None:
    core = load_core(make_config(**SMALL_BEADS, Z__DriftUmPerMin=60))  # 1 um/s
    core.setPosition(2.0)
    first = core.getPosition()

    time.sleep(0.3)
    assert first + 0.25 < core.getPosition() < first + 1.0


def test_frame_depends_on_focus_and_noise_is_seeded(small_core: CMMCorePlus) -> None:
    small_core.setShutterOpen(True)
    small_core.setPosition(1.0)
    a = _snap(small_core).astype(float)
    small_core.setPosition(3.0)
    b = _snap(small_core).astype(float)
    assert np.abs(a - b).mean() > 1.0


@pytest.mark.parametrize("config", SHIPPED_CONFIGS, ids=lambda p: p.stem)
def test_mda_z_stack_runs_on_each_shipped_config(config: Path) -> None:
    core = load_core(config)
    assert core.getPixelSizeUm() == pytest.approx(0.1)
    core.setProperty("Camera", "Width", "128")
    core.setProperty("Camera", "Height", "120")
    frames: list[tuple[np.ndarray, float]] = []
    core.mda.events.frameReady.connect(
        lambda image, event, meta: frames.append((image.copy(), meta["position"]["z"]))
    )
    planes = [1.0, 4.0, 7.0]
    with light_path_open(core):
        core.mda.run(useq.MDASequence(z_plan=useq.ZAbsolutePositions(absolute=planes)))
    assert not core.getShutterOpen()
    assert [z for _, z in frames] == pytest.approx(planes)
    for image, _ in frames:
        assert image.shape == (120, 128)
        assert image.dtype == np.uint16
        assert image.mean() > 101.5  # light on top of the 100 ADU offset
    stack = np.stack([image for image, _ in frames]).astype(float)
    assert stack.max() > 125  # structure: background alone stays below ~110
    assert np.abs(stack[0] - stack[2]).mean() > 1.0


CONFIG_ERRORS = [
    ("unknown class", {"old": "SimulatedCamera", "new": "NoSuchCamera"}, "NoSuchCamera"),
    ("unknown module", {"old": "simulators.devices,SimulatedShutter", "new": "nope,X"}, "nope"),
    ("wrong type", {"old": "Camera,Width,256", "new": "Camera,Width,wide"}, "not a valid int"),
    ("out of range", {"old": "Camera,Width,256", "new": "Camera,Width,99999"}, "outside"),
    ("unknown property", {"old": "Camera,Width,256", "new": "Camera,Wdth,256"}, "Wdth"),
    ("bad optics", {"old": "NumericalAperture,1.4", "new": "NumericalAperture,1.6"}, "immersion"),
    ("bad limits", {"old": "UpperLimitUm,12", "new": "UpperLimitUm,-5"}, "LowerLimitUm"),
    ("bad choice", {"old": "SampleKind,beads", "new": "SampleKind,cells"}, "cells"),
    (
        "bad family",
        {
            "old": "SampleKind,beads",
            "new": "SampleKind,structures\n#py Property,Microscope,SampleFamilies,cells+axons",
        },
        "axons",
    ),
]


@pytest.mark.parametrize(
    ("name", "edit", "fragment"), CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS]
)
def test_config_errors_are_clear(
    tmp_path: Path, name: str, edit: dict[str, str], fragment: str
) -> None:
    text = (SHIPPED_CONFIGS[0].parent / "simulated_beads.cfg").read_text()
    assert edit["old"] in text
    path = tmp_path / "broken.cfg"
    path.write_text(text.replace(edit["old"], edit["new"], 1))
    with pytest.raises(ConfigError, match=fragment) as info:
        load_core(path)
    assert "broken.cfg" in str(info.value)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_core(tmp_path / "nope.cfg")


def test_real_hardware_config_without_micromanager_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICROMANAGER_PATH", str(tmp_path / "no-mm-here"))
    path = tmp_path / "demo.cfg"
    path.write_text(
        "Device,Camera,DemoCamera,DCam\nDevice,Z,DemoCamera,DStage\n"
        "Property,Core,Initialize,1\nProperty,Core,Camera,Camera\n"
    )
    with pytest.raises(ConfigError, match="mmcore install"):
        load_core(path)


def test_structure_families_under_the_objective(make_config: Callable[..., Path]) -> None:
    frames = {}
    for families in ("filaments", "membranes", "filaments+membranes"):
        core = load_core(
            make_config(
                **SMALL_BEADS,
                Microscope__SampleKind="structures",
                Microscope__SampleFamilies=families,
                Microscope__StructureFill=0.8,
                Camera__ReadNoiseE=0,
            )
        )
        with light_path_open(core):
            core.setPosition(2.0)
            frames[families] = _snap(core).astype(float)
    for frame in frames.values():
        assert frame.std() > 0.05 * frame.mean()  # structure, not a flat field
    a, b, mixed = frames.values()
    assert not np.array_equal(a, b) and not np.array_equal(mixed, a)


def test_sample_from_a_tiff_with_its_voxel_size(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    import tifffile

    # A 1 um bright cube in the middle of a 4 um deep stack sampled at
    # 0.2 um laterally and 0.5 um axially.
    volume = np.zeros((9, 32, 32), np.float32)
    volume[4, 14:19, 14:19] = 1.0
    path = tmp_path / "cube.tif"
    tifffile.imwrite(path, volume)
    config = make_config(
        **SMALL_BEADS,
        Microscope__SampleKind="tiff",
        Microscope__SampleTiffPath=path,
        Microscope__SampleTiffVoxelXYUm=0.2,
        Microscope__SampleTiffVoxelZUm=0.5,
    )
    core = load_core(config)
    with light_path_open(core):
        core.setPosition(2.0)  # the cube's plane
        focused = _snap(core).astype(float) - 100
        core.setPosition(4.5)
        blurred = _snap(core).astype(float) - 100
    # The cube (64 x 64 px camera at 0.1 um, object 6.4 um wide, centred).
    centre = focused[28:36, 28:36].mean()
    assert centre > 20 * max(focused[:8, :8].mean(), 1.0)
    assert blurred[28:36, 28:36].mean() < 0.5 * centre


def _bright_snap(core: CMMCorePlus, photon_flux: str) -> np.ndarray:
    """A frame at z 2 um with the shutter open, no read noise and this flux."""
    core.setShutterOpen(True)
    core.setProperty("Camera", "ReadNoiseE", "0")
    core.setProperty("Microscope", "PhotonFluxPerS", photon_flux)
    core.setPosition(2.0)
    return _snap(core).astype(float)


def test_optics_change_from_python_re_renders(small_core: CMMCorePlus) -> None:
    sharp = _bright_snap(small_core, "1e8")
    small_core.setProperty("Microscope", "NumericalAperture", "0.5")
    soft = _snap(small_core).astype(float)

    # At NA 0.5 the optics pass no spatial frequency above 2 NA / lambda
    # (1.6 cycles/um): beyond it only shot noise is left, while at NA 1.4 the
    # beads still have detail there.
    def high_band_power(image: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft2(image - image.mean())) ** 2
        fy = np.fft.fftfreq(image.shape[0], d=0.1)[:, None]
        fx = np.fft.rfftfreq(image.shape[1], d=0.1)[None, :]
        band = (np.hypot(fy, fx) > 2.0) & (np.hypot(fy, fx) < 4.0)
        return float(spectrum[band].sum())

    assert high_band_power(sharp) > 3 * high_band_power(soft)
    with pytest.raises(ValueError, match="immersion"):
        small_core.setProperty("Microscope", "NumericalAperture", "1.6")
    assert float(small_core.getProperty("Microscope", "NumericalAperture")) == 0.5


def test_psf_model_property_widens_the_focused_beads(small_core: CMMCorePlus) -> None:
    scalar = _bright_snap(small_core, "1e7")
    small_core.setProperty("Microscope", "PSFModel", "vectorial")
    vectorial = _snap(small_core).astype(float)
    # same beads and light, each spread over a wider spot: lower peaks
    saturated = float(small_core.getProperty("Camera", "FullWellE")) * float(
        small_core.getProperty("Camera", "Gain")
    )
    assert scalar.max() < 0.5 * saturated  # not clipped by the camera
    assert vectorial.max() < 0.9 * scalar.max()
    assert vectorial.sum() == pytest.approx(scalar.sum(), rel=0.02)
    with pytest.raises(ValueError, match="PSFModel"):
        small_core.setProperty("Microscope", "PSFModel", "gaussian")
    assert small_core.getProperty("Microscope", "PSFModel") == "vectorial"


def _expected(core: CMMCorePlus) -> np.ndarray:
    """The noise-free photon image the camera would see now."""
    from simulators.bench import bench_for

    camera = loaded_python_device(core, "Camera")
    bench = bench_for(camera, "default")
    return bench.expected_photons((64, 64), 10.0)


def test_xy_stage_moves_the_view_over_the_sample(make_config: Callable[..., Path]) -> None:
    core = load_core(make_config(**SMALL_BEADS))
    without = make_config(**SMALL_BEADS)
    lines = without.read_text().splitlines(keepends=True)
    without.write_text("".join(line for line in lines if ",XY" not in line))
    plain = load_core(without)
    for c in (core, plain):
        c.setShutterOpen(True)
        c.setPosition(2.0)
    home = _expected(core)
    np.testing.assert_array_equal(home, _expected(plain))  # a single scan sees what it saw
    core.setXYPosition(1.6, 0.0)  # 16 px to the right: the picture moves 16 px left
    np.testing.assert_allclose(_expected(core)[:, :-16], home[:, 16:], rtol=1e-5, atol=1e-6)
    core.setXYPosition(30.0, 0.0)
    assert np.abs(_expected(core) - home).mean() > 0.05 * home.mean()  # other structure
    with pytest.raises(StageLimitError, match="did not move"):
        core.setXYPosition(600.0, 0.0)
    assert core.getXYPosition() == pytest.approx((30.0, 0.0))


def test_sample_drift_changes_the_view_over_time(make_config: Callable[..., Path]) -> None:
    core = load_core(make_config(**SMALL_BEADS, Microscope__SampleDriftXUmPerMin=60))  # 1 um/s
    core.setShutterOpen(True)
    core.setPosition(2.0)
    first = _expected(core)
    time.sleep(0.25)
    moved = _expected(core)
    assert np.abs(moved - first).mean() > 0.01 * first.mean()
