"""Careless commands and injected faults: nothing moves that should not, nothing is lost.

Each case here failed before the safety work of issue 17: a stage driven past
its travel, files overwritten, frames dropped, tracebacks for typos.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from pymmcore_plus import CMMCorePlus

from rmz_acq.acquisition import AdaptiveScan, FrameRecord, ScanPlan, ScanSettings, StopReason
from rmz_acq.cli import main
from rmz_acq.errors import AcquisitionError, RmzError, RunLockedError, StageSafetyError
from rmz_acq.io import FrameStackWriter, ome_tiff, read_zstack, write_zstack
from rmz_acq.io.outputs import RunFolder, check_writable
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import LoadedModel, load_model, save_weights
from rmz_acq.session import ReconstructionSession
from rmz_acq.training.conditions import PRESET_CONDITIONS
from rmz_acq.zstack import acquire_zstack
from simulators.devices import SimulatedCamera
from tests.conftest import SMALL_BEADS

OUTPUT = np.round(np.arange(0.0, 4.01, 0.25), 6)
CANDIDATES = [0.5, 1.5, 2.5, 3.5]


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    conditions = PRESET_CONDITIONS["beads"].model_dump() | {"depth_um": 4.0}
    model = RecurrentMZ(base_channels=2, depth=2)
    return save_weights(model, tmp_path / "tiny.safetensors", name="tiny", conditions=conditions)


@pytest.fixture
def tiny(weights: Path) -> LoadedModel:
    return load_model(weights)


@pytest.fixture
def config(make_config: Callable[..., Path]) -> Path:
    return make_config(**SMALL_BEADS)  # 64 x 64 px, stage travel -1 to 5 um


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """``rmz-acq ARGS`` in this process: (exit status, stdout, stderr)."""
    argv = sys.argv
    sys.argv = ["rmz-acq", *map(str, args)]
    # Objects an earlier test left for the garbage collector (a Dask cluster's
    # pipes) are collected now, so their ResourceWarnings do not land in this
    # command's stderr, which the tests read line by line.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    capsys.readouterr()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], err


def _scan(core: CMMCorePlus, model: LoadedModel, run_dir: Path, **kwargs: object) -> AdaptiveScan:
    plan = ScanPlan.build(OUTPUT, candidates_um=CANDIDATES)
    settings = ScanSettings(epsilon=0.0, decision_planes=5)  # the rest completed aside
    return AdaptiveScan(core, model, plan, settings, run_dir, **kwargs)  # type: ignore[arg-type]


def _frames_file(path: Path, n: int = 3, *, pixel: float | None = 0.1) -> Path:
    rng = np.random.default_rng(0)
    frames = (100 + 300 * rng.random((n, 24, 28))).astype(np.uint16)
    z = [1.0 + i for i in range(n)]
    if pixel is None:
        tifffile.imwrite(path, frames, photometric="minisblack")  # no metadata at all
    else:
        write_zstack(path, frames, z, pixel)
    return path


# --- stage safety -----------------------------------------------------------


def test_z_limits_only_narrow_the_stage_travel(
    small_core: CMMCorePlus, tiny: LoadedModel, tmp_path: Path
) -> None:
    small_core.setPosition(2.0)
    plan = ScanPlan.build(OUTPUT, candidates_um=[1.0, 4.0, 7.0])  # the stage stops at 5
    with pytest.raises(
        StageSafetyError, match=r"\(7 um\) are outside .*\[-1, 5\].*can only narrow"
    ):
        AdaptiveScan(small_core, tiny, plan, ScanSettings(), tmp_path / "r", limits_um=(-50, 50))
    with pytest.raises(StageSafetyError, match="outside the focus travel limits"):
        acquire_zstack(small_core, [1.0, 7.0], tmp_path / "s.ome.tif", limits_um=(-50, 50))
    assert small_core.getPosition() == pytest.approx(2.0)
    assert not (tmp_path / "r").exists() and not (tmp_path / "s.ome.tif").exists()
    # narrower limits are honoured, and recorded
    scan = _scan(small_core, tiny, tmp_path / "ok", limits_um=(0.0, 4.0))
    assert scan.limits_um == (0.0, 4.0)
    with pytest.raises(StageSafetyError, match=r"\[0, 3\]"):
        _scan(small_core, tiny, tmp_path / "no", limits_um=(0.0, 3.0))


def test_cli_z_limits_cannot_widen_the_travel(
    capsys: pytest.CaptureFixture[str], config: Path, weights: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    code, _, err = cli(
        capsys,
        *("acquire", "-c", config, "-m", weights, "-o", run, "--z-range", "2:6:0.5"),
        *("--candidates", "3,6", "--z-limits", "-50:50"),
    )
    one_line_error(code, err, "(6 um) are outside the focus travel limits [-1, 5]")
    assert not run.exists()
    stack = tmp_path / "stack.ome.tif"
    code, _, err = cli(
        capsys, "stack", "-c", config, "--z-range", "3:7:1", "--z-limits", "-50:50", "-o", stack
    )
    assert code == 2 and "(6 to 7 um) are outside" in err and "can only narrow" in err
    assert not stack.exists()


def test_a_volume_that_does_not_fit_is_refused_before_anything_moves(
    capsys: pytest.CaptureFixture[str],
    small_core: CMMCorePlus,
    tiny: LoadedModel,
    weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 90,001 planes of 256 x 256 px: hundreds of GiB of recurrent state
    full = Path(__file__).parents[2] / "device_configs" / "simulated_beads.cfg"
    args = ("acquire", "-c", full, "-m", weights, "-o", tmp_path / "r", "--dry-run")
    code, out, err = cli(capsys, *args, "--z-range", "2:11:0.0001", "--candidates", "4,7,10")
    one_line_error(code, err, "90001 output planes of 256 x 256 px need about")
    assert "nothing was moved" in err and out == ""
    # the Python API refuses too, with the free memory it measured
    monkeypatch.setattr("rmz_acq.safety.available_memory_bytes", lambda device="cpu": 2**16)
    small_core.setPosition(2.0)
    with pytest.raises(RmzError, match=r"17 output planes of 64 x 64 px need .* only 0.00 GiB"):
        _scan(small_core, tiny, tmp_path / "run")
    assert small_core.getPosition() == pytest.approx(2.0) and not (tmp_path / "run").exists()
    frames = _frames_file(tmp_path / "f.ome.tif")
    code, _, err = cli(
        capsys, "reconstruct", frames, "--z-range", "0:4:0.1", "-m", weights, "-o", tmp_path / "v"
    )
    one_line_error(code, err, "need about")


# --- never overwrite silently ----------------------------------------------


def test_reconstruct_never_writes_over_its_input_or_an_existing_file(
    capsys: pytest.CaptureFixture[str], weights: Path, tmp_path: Path
) -> None:
    frames = _frames_file(tmp_path / "frames.ome.tif")
    before = frames.read_bytes()
    grid = ("--z-range", "1:3:0.5", "-m", weights)
    for extra in ((), ("--overwrite",)):
        code, _, err = cli(capsys, "reconstruct", frames, *grid, "-o", frames, *extra)
        one_line_error(code, err, "is the input")
    alias = tmp_path / "sub" / ".." / "frames.ome.tif"
    (tmp_path / "sub").mkdir()
    code, _, err = cli(capsys, "reconstruct", frames, *grid, "-o", alias, "--overwrite")
    one_line_error(code, err, "is the input")
    assert frames.read_bytes() == before
    out = tmp_path / "volume.ome.tif"
    assert cli(capsys, "reconstruct", frames, *grid, "-o", out)[0] == 0
    stamp = out.stat().st_mtime_ns
    code, _, err = cli(capsys, "reconstruct", frames, *grid, "-o", out)
    one_line_error(code, err, "already exists; choose another name or add --overwrite")
    assert out.stat().st_mtime_ns == stamp
    assert cli(capsys, "reconstruct", frames, *grid, "-o", out, "--overwrite")[0] == 0
    # reconstruct-runs never writes over a run's frames
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    shutil.copy(frames, run / "frames.ome.tif")
    for name in ("frames.ome.tif", "unused_frames.ome.tif"):
        code, _, err = cli(
            capsys, "reconstruct-runs", tmp_path / "runs", *grid, "--output-name", name
        )
        one_line_error(code, err, "where a run keeps its frames")
    assert (run / "frames.ome.tif").read_bytes() == before


def test_acquire_refuses_a_used_run_folder_and_overwrite_clears_only_run_files(
    capsys: pytest.CaptureFixture[str], config: Path, weights: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ("acquire", "-c", config, "-m", weights, "-o", run, "--epsilon", "0")
    first = (*args, "--candidates", "0.5,1.5,2.5,3.5", "--save-history")
    assert cli(capsys, *first)[0] == 0
    assert len(list(run.glob("volume_after_*_frames.ome.tif"))) == 4
    (run / "notes.txt").write_text("mine")
    report = (run / "report.json").read_text()
    code, _, err = cli(capsys, *args, "--candidates", "1,3")
    one_line_error(code, err, "is not empty")
    assert (run / "report.json").read_text() == report  # untouched
    code, _, err = cli(capsys, *args, "--candidates", "1,3", "--overwrite")
    assert code == 0, err
    assert not list(run.glob("volume_after_*"))  # the old run's files are gone
    assert (run / "notes.txt").read_text() == "mine"  # the user's file is not
    assert len(json.loads((run / "report.json").read_text())["frames"]) == 2
    assert len(read_zstack(run / "frames.ome.tif").data) == 2
    # a file in the folder's place, or a folder below a file
    code, _, err = cli(capsys, "acquire", "-c", config, "-m", weights, "-o", run / "notes.txt")
    one_line_error(code, err, "is a file")
    code, _, err = cli(capsys, "acquire", "-c", config, "-m", weights, "-o", run / "notes.txt/x")
    one_line_error(code, err, "is a file, not a folder")


def test_unwritable_places_are_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # (tests may run as root)
    with pytest.raises(RmzError, match="is not writable"):
        check_writable(tmp_path / "new" / "run" / "report.json")
    with pytest.raises(RmzError, match="is not writable"):
        RunFolder(tmp_path / "run").check()


def test_a_run_folder_in_use_is_locked(
    small_core: CMMCorePlus, tiny: LoadedModel, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    with RunFolder(run).locked():
        scan = _scan(small_core, tiny, run)
        with pytest.raises(
            RunLockedError, match=f"in use by another scan \\(process {os.getpid()}"
        ):
            scan.run()
        assert not (run / "frames.ome.tif").exists()
        with pytest.raises(RunLockedError), RunFolder(run).locked():  # this process, again
            pass
    report = _scan(small_core, tiny, run).run()  # released: the scan goes ahead
    assert len(report.frames) == len(CANDIDATES)
    assert not (run / ".rmz_acq.lock").exists()


def test_a_second_acquire_into_a_locked_folder_is_refused(
    capsys: pytest.CaptureFixture[str], config: Path, weights: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen(  # another process holds the lock, as a running scan does
        [
            sys.executable,
            "-c",
            "import sys, time; from rmz_acq.io.outputs import RunFolder\n"
            f"with RunFolder({str(run)!r}).locked():\n"
            "    print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        code, _, err = cli(capsys, "acquire", "-c", config, "-m", weights, "-o", run)
        one_line_error(code, err, f"in use by another scan (process {holder.pid})")
    finally:
        holder.kill()
        holder.wait()
    assert (
        cli(capsys, "acquire", "-c", config, "-m", weights, "-o", run, "--max-frames", "2")[0] == 0
    )


# --- faults keep the data ---------------------------------------------------


def test_report_is_on_disk_from_the_first_frame(
    small_core: CMMCorePlus, tiny: LoadedModel, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    seen: list[dict[str, object]] = []
    scan = _scan(small_core, tiny, run)
    scan.events.decisionMade.connect(  # before the next move
        lambda record: seen.append(json.loads((run / "report.json").read_text()))
    )
    scan.run()
    assert [len(r["frames"]) for r in seen] == [1, 2, 3, 4]  # type: ignore[arg-type]
    assert all(r["stop_reason"] == "error" and not r["finished"] for r in seen)
    assert all(r["pixel_size_um"] == pytest.approx(0.1) for r in seen)
    final = json.loads((run / "report.json").read_text())
    assert final["finished"] and final["stop_reason"] == "max_frames" and final["error"] is None


def test_disk_full_leaves_the_report_and_no_debris(
    small_core: CMMCorePlus,
    tiny: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = tifffile.imwrite

    def full_disk(path: object, *args: object, **kwargs: object) -> None:
        if Path(str(path)).name.startswith("volume"):
            Path(str(path)).write_bytes(b"half a volume")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ome_tiff.tifffile, "imwrite", full_disk)
    run = tmp_path / "run"
    with pytest.raises(AcquisitionError, match=r"volume\.ome\.tif not written.*No space"):
        _scan(small_core, tiny, run).run()
    report = json.loads((run / "report.json").read_text())
    assert report["stop_reason"] == "error" and report["finished"]
    assert "No space left on device" in report["error"] and "stopped: max_frames" in report["error"]
    assert len(read_zstack(run / "frames.ome.tif").data) == len(CANDIDATES)
    assert not list(run.glob("*.partial")) and not (run / "volume.ome.tif").exists()


def test_a_run_folder_removed_mid_scan_stops_the_scan(
    small_core: CMMCorePlus, tiny: LoadedModel, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    scan = _scan(small_core, tiny, run)

    def remove(record: FrameRecord) -> None:
        while record.index == 1 and run.exists():  # the scan's other thread may write meanwhile
            shutil.rmtree(run, ignore_errors=True)

    scan.events.decisionMade.connect(remove)
    with pytest.raises(
        AcquisitionError, match="was removed during the scan; stopped after frame 3"
    ):
        scan.run()
    assert scan.report is not None and scan.report.stop_reason is StopReason.ERROR
    assert len(scan.report.frames) == 2  # the third frame was taken, then the scan stopped
    assert not small_core.getShutterOpen()


def test_ctrl_c_in_python_is_a_cancel_with_everything_written(
    small_core: CMMCorePlus,
    tiny: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = {"n": 0}
    original = SimulatedCamera.snap

    def interrupted(self: SimulatedCamera, buffer: np.ndarray) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, buffer)

    monkeypatch.setattr(SimulatedCamera, "snap", interrupted)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _scan(small_core, tiny, run).run()
    report = json.loads((run / "report.json").read_text())
    assert report["stop_reason"] == "cancelled" and report["error"] is None
    assert report["finished"] and len(report["frames"]) == 2
    assert (run / "volume.ome.tif").is_file() and not small_core.getShutterOpen()


def _start_acquire(config: Path, weights: Path, run: Path) -> subprocess.Popen[str]:
    candidates = ",".join(f"{z:.1f}" for z in np.arange(0.0, 4.01, 0.2))  # 21 planes
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "rmz_acq", "acquire", "-c", str(config), "-m", str(weights)),
            *("-o", str(run), "--epsilon", "0", "--order", "as-given", "--candidates", candidates),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _wait_for_frames(process: subprocess.Popen[str], n: int) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith(f"frame {n}/"):
            return
    raise AssertionError("the scan ended before the signal")


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_cancel_the_scan_and_keep_everything(
    config: Path, weights: Path, tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    run = tmp_path / "run"
    process = _start_acquire(config, weights, run)
    _wait_for_frames(process, 2)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    assert f"cancelled by {sig.name}: " in err and str(run) in err
    assert "Traceback" not in err
    report = json.loads((run / "report.json").read_text())
    assert report["stop_reason"] == "cancelled" and report["finished"]
    taken = len(report["frames"])
    assert 2 <= taken < 21
    assert len(read_zstack(run / "frames.ome.tif").data) == taken
    assert read_zstack(run / "volume.ome.tif").data.shape[0] == len(report["output_planes_um"])


def test_a_killed_scan_can_be_reconstructed_from_what_is_on_disk(
    capsys: pytest.CaptureFixture[str], config: Path, weights: Path, tmp_path: Path
) -> None:
    run = tmp_path / "runs" / "killed"
    process = _start_acquire(config, weights, run)
    _wait_for_frames(process, 3)
    process.kill()  # kill -9: nothing gets to clean up
    process.communicate(timeout=60)
    report = json.loads((run / "report.json").read_text())
    assert report["stop_reason"] == "error" and not report["finished"]
    assert "has not finished" in report["error"]
    stack = read_zstack(run / "frames.ome.tif")  # the unfinished stream, page by page
    assert stack.z_um is not None and stack.pixel_size_um == pytest.approx(0.1)
    assert len(stack.data) >= 3
    out = tmp_path / "volume.ome.tif"
    code, _, err = cli(
        capsys,
        "reconstruct",
        run / "frames.ome.tif",
        "--z-range",
        "0:4:0.5",
        "-m",
        weights,
        "-o",
        out,
    )
    assert code == 0, err
    code, _, err = cli(capsys, "reconstruct-runs", tmp_path / "runs", "-m", weights, "-j", "1")
    assert code == 0, err
    assert read_zstack(run / "volume.ome.tif").data.shape[0] == len(report["output_planes_um"])


def test_a_truncated_frames_file_gives_its_intact_frames_and_a_warning(
    capsys: pytest.CaptureFixture[str], weights: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    writer = FrameStackWriter(run / "frames.ome.tif", 0.1)  # never closed: a crash
    for i in range(5):
        writer.append(np.full((32, 32), 100 + i, np.uint16), float(i))
    (run / "report.json").write_text(json.dumps({"frames": [{}] * 5}))
    path = run / "frames.ome.tif"
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 100)  # the last frame cut short
    with pytest.warns(UserWarning, match="lost"):
        stack = read_zstack(path)
    assert len(stack.data) == 4 and list(stack.z_um) == [0.0, 1.0, 2.0, 3.0]  # type: ignore[arg-type]
    code, _, err = cli(
        capsys, "reconstruct", path, "--z-range", "0:3:1", "-m", weights, "-o", tmp_path / "v"
    )
    assert code == 0, err
    assert "warning:" in err and "4 intact frames but report.json lists 5: 1 lost" in err
    assert "no z positions" not in err
    # a file that is no TIFF at all: one line, no tifffile noise
    junk = tmp_path / "junk.ome.tif"
    junk.write_bytes(b"II*\x00" + bytes(200))
    code, _, err = cli(
        capsys, "reconstruct", junk, "--z-range", "0:3:1", "-m", weights, "-o", tmp_path / "j"
    )
    one_line_error(code, err, "junk.ome.tif")


def test_reconstruct_runs_skips_a_run_without_report_and_takes_a_pixel_size(
    capsys: pytest.CaptureFixture[str], weights: Path, tmp_path: Path
) -> None:
    root = tmp_path / "runs"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        _frames_file(root / name / "frames.ome.tif")
    (root / "a" / "report.json").write_text(json.dumps({"output_planes_um": [1.0, 2.0]}))
    code, _, err = cli(capsys, "reconstruct-runs", root, "-m", weights, "-j", "1")
    assert code == 2 and f"skipped {root / 'b'}" in err and "--z-range" in err
    assert (root / "a" / "volume.ome.tif").is_file()  # the good run was done
    assert not (root / "b" / "volume.ome.tif").exists()
    code, _, err = cli(capsys, "reconstruct-runs", root, "-m", weights, "--z-range", "1:2:1")
    assert code == 0 and (root / "b" / "volume.ome.tif").is_file(), err
    # frames that carry their z but no pixel size
    bare = tmp_path / "bare" / "c"
    bare.mkdir(parents=True)
    with tifffile.TiffWriter(bare / "frames.ome.tif") as tif:
        for z in (1.0, 2.0, 3.0):
            tif.write(
                np.full((24, 28), 150, np.uint16), description=json.dumps({"PositionZ_um": z})
            )
    (bare / "report.json").write_text(json.dumps({"output_planes_um": [1.0, 2.0]}))
    code, _, err = cli(capsys, "reconstruct-runs", tmp_path / "bare", "-m", weights, "-j", "1")
    assert code == 2 and "--pixel-size-um" in err and "Traceback" not in err
    code, _, err = cli(
        capsys, "reconstruct-runs", tmp_path / "bare", "-m", weights, "--pixel-size-um", "0.2"
    )
    assert code == 0, err
    assert read_zstack(bare / "volume.ome.tif").pixel_size_um == pytest.approx(0.2)


def _join_serving_qt(worker: threading.Thread, timeout_s: float = 60.0) -> None:
    """Wait for ``worker``; once a QApplication exists (an earlier viewer test),
    pymmcore-plus delivers frames through its event loop, so keep it turning."""
    qt = sys.modules.get("qtpy.QtWidgets")
    app = qt.QApplication.instance() if qt is not None else None
    deadline = time.monotonic() + timeout_s
    while worker.is_alive() and time.monotonic() < deadline:
        if app is not None:
            app.processEvents()
        worker.join(0.01)
    assert not worker.is_alive(), "the scan did not end"


def test_a_cancel_from_another_thread_during_a_snap_loses_no_frame(
    small_core: CMMCorePlus,
    tiny: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = tmp_path / "run"
    scan = _scan(small_core, tiny, run)
    snaps = {"n": 0}
    original = SimulatedCamera.snap

    def snap_while_cancelled(self: SimulatedCamera, buffer: np.ndarray) -> object:
        snaps["n"] += 1
        if snaps["n"] == 2:  # the viewer is closed while the camera exposes
            closer = threading.Thread(target=scan.cancel)
            closer.start()
            closer.join()
        return original(self, buffer)

    monkeypatch.setattr(SimulatedCamera, "snap", snap_while_cancelled)
    worker = threading.Thread(target=scan.run)
    worker.start()
    _join_serving_qt(worker)
    assert scan.report is not None and scan.report.stop_reason is StopReason.CANCELLED
    used = len(read_zstack(run / "frames.ome.tif").data)
    unused = run / "unused_frames.ome.tif"
    spare = len(read_zstack(unused).data) if unused.exists() else 0
    assert used + spare == snaps["n"] == 2


def test_pause_uses_set_paused_not_the_deprecated_toggle(
    small_core: CMMCorePlus, tiny: LoadedModel, tmp_path: Path
) -> None:
    scan = _scan(small_core, tiny, tmp_path / "run")
    states: list[bool] = []

    def pause_and_resume(update: object) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            scan.set_paused(True)
            states.append(small_core.mda.is_paused() or small_core.mda._pause_requested)  # type: ignore[attr-defined]
            scan.toggle_pause()
            scan.set_paused(False)

    scan.events.decisionMade.connect(pause_and_resume)
    assert len(scan.run().frames) == len(CANDIDATES)
    assert states and all(states)


# --- bad input: one line, exit 2 ---------------------------------------------


def test_non_finite_weights_are_refused_and_json_is_strict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = RecurrentMZ(base_channels=2, depth=2)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = save_weights(model, tmp_path / "nan.safetensors", name="nan")
    with pytest.raises(RmzError, match="non-finite weights"):
        load_model(path)
    frames = _frames_file(tmp_path / "f.ome.tif")
    code, _, err = cli(
        capsys, "reconstruct", frames, "--z-range", "1:3:1", "-m", path, "-o", tmp_path / "v"
    )
    one_line_error(code, err, "non-finite weights")
    assert not (tmp_path / "v").exists()
    # a volume that turns non-finite anyway is an error, not a file of NaN
    session = ReconstructionSession(model, [1.0, 2.0], device="cpu")
    with pytest.raises(RmzError, match="non-finite values"):
        session.push(np.full((24, 28), 200.0), 1.0)
    # report.json stays valid JSON whatever the numbers
    from rmz_acq.acquisition.report import FrameRecord, ScanReport

    report = ScanReport(StopReason.ERROR, None, float("nan"), {}, [0.0], [0.0])
    report.frames.append(FrameRecord(0, 0.0, 0.0, 0.1, float("inf"), float("nan"), 0.1))
    text = report.write(tmp_path / "report.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert data["frames"][0]["frobenius_change"] is None


BAD_INPUT = [
    ("device that is not here", ["--device", "cuda:999"], "--device cuda:999"),
    ("device that is no device", ["--device", "gpu"], "not a device name"),
    ("range backwards", ["--z-range", "3:1:0.5"], "stop 1.0 um is below start 3.0 um"),
    ("step longer than the range", ["--z-range", "2:6:100"], "longer than the range"),
    ("max frames zero", ["--max-frames", "0"], "--max-frames: input should be greater"),
    ("min frames zero", ["--min-frames", "0"], "--min-frames: input should be greater"),
    ("negative exposure", ["--exposure-ms", "-1"], "--exposure-ms: input should be greater"),
    ("candidate step zero", ["--candidate-step", "0"], "--candidate-step-um must be a positive"),
    ("candidate nan", ["--candidates", "4,nan"], "'nan' is not a finite number"),
    (
        "candidate a hair past the limit",
        ["--candidates", "1,3,5.0000001", "--z-range", "1:5:1"],
        "(5.0000001 um) are outside the focus travel limits [-1, 5]",
    ),
]


@pytest.mark.parametrize(("name", "args", "fragment"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_acquire_input_is_one_line_and_moves_nothing(
    capsys: pytest.CaptureFixture[str],
    config: Path,
    weights: Path,
    tmp_path: Path,
    name: str,
    args: list[str],
    fragment: str,
) -> None:
    run = tmp_path / "run"
    code, _, err = cli(capsys, "acquire", "-c", config, "-m", weights, "-o", run, *args)
    one_line_error(code, err, fragment)
    assert not run.exists()


def test_a_config_with_impossible_optics_is_one_line(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = make_config(**SMALL_BEADS, Microscope__NumericalAperture=1.6)
    out = tmp_path / "s.ome.tif"
    args = ["stack", "-c", str(config), "--z-range", "0:1:1", "-o", str(out)]
    result = subprocess.run(  # a real process: the device layer's log goes to stderr
        [sys.executable, "-m", "rmz_acq", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    one_line_error(
        result.returncode,
        result.stderr,
        "numerical_aperture 1.6 must be below the immersion index",
    )


def test_progress_counts_against_max_frames(
    capsys: pytest.CaptureFixture[str], config: Path, weights: Path, tmp_path: Path
) -> None:
    code, _, err = cli(
        capsys,
        *("acquire", "-c", config, "-m", weights, "-o", tmp_path / "run", "--epsilon", "0"),
        *("--candidates", "0.5,1.5,2.5,3.5", "--max-frames", "2"),
    )
    assert code == 0, err
    assert "frame 1/2 " in err and "frame 2/2 " in err and "/4" not in err


def test_failures_after_the_start_exit_1_with_one_line(
    capsys: pytest.CaptureFixture[str],
    config: Path,
    weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = SimulatedCamera.snap
    calls = {"n": 0}

    def dies(self: SimulatedCamera, buffer: np.ndarray) -> object:
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("camera disconnected")
        return original(self, buffer)

    monkeypatch.setattr(SimulatedCamera, "snap", dies)
    stack = tmp_path / "stack.ome.tif"
    code, _, err = cli(capsys, "stack", "-c", config, "--z-range", "0:4:1", "-o", stack)
    assert code == 1 and err.startswith("error: only 2 of 5 frames arrived"), err
    assert len(read_zstack(stack).data) == 2  # what was taken is kept
    monkeypatch.undo()

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "v.ome.tif.partial"))

    frames = _frames_file(tmp_path / "f.tif", pixel=None)
    monkeypatch.setattr(ome_tiff.tifffile, "imwrite", full_disk)
    code, _, err = cli(
        capsys,
        *("reconstruct", frames, "--z", "1,2,3", "--pixel-size-um", "0.1"),
        *("--z-range", "1:3:1", "-m", weights, "-o", tmp_path / "v.ome.tif"),
    )
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and "Traceback" not in err, err
    assert errors == [f"error: cannot write {tmp_path / 'v.ome.tif'}: No space left on device"]
    assert not list(tmp_path.glob("*.partial"))
