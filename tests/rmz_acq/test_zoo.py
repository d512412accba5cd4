"""BioImage Model Zoo packages: export, read back as ``--model``, and the zoo's own test."""

from __future__ import annotations

import io
import json
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rmz_acq.acquisition.plan import SCAN_DEFAULTS_KEY, ScanDefaults, scan_defaults
from rmz_acq.errors import DataWarning, RmzError
from rmz_acq.model.weights import LoadedModel, load_model, save_weights
from rmz_acq.reconstruct import FrameSet, reconstruct_frames
from rmz_acq.zoo import RecurrentMZVolume
from rmz_acq.zoo.export import export_bioimageio, sample_planes
from tests.rmz_acq.test_fault_injection import cli, one_line_error


def _description(folder: Path) -> dict:
    return yaml.safe_load((folder / "rdf.yaml").read_text())


def test_package_describes_frames_z_and_volume_and_reproduces_itself(
    tiny_model: LoadedModel, tmp_path: Path
) -> None:
    folder = export_bioimageio(tiny_model.path, tmp_path / "tiny_zoo")
    rdf = _description(folder)
    assert rdf["format_version"].startswith("0.5")
    weights = rdf["weights"]["pytorch_state_dict"]
    assert weights["architecture"]["import_from"] == "rmz_acq.zoo"
    assert weights["architecture"]["callable"] == "RecurrentMZVolume"
    assert weights["architecture"]["kwargs"]["depth"] == 2
    assert [t["id"] for t in rdf["inputs"]] == ["frames", "frame_z_um", "output_z_um"]
    assert [a.get("id", a["type"]) for a in rdf["inputs"][0]["axes"]] == [
        "batch",
        "frame",
        "y",
        "x",
    ]
    assert rdf["inputs"][0]["axes"][2]["scale"] == pytest.approx(0.1)
    assert rdf["outputs"][0]["axes"][1]["size"] == {"tensor_id": "output_z_um", "axis_id": "plane"}
    assert rdf["cite"][0]["doi"] == "10.1038/s41377-021-00506-9"
    assert rdf["config"]["rmz_acq"]["conditions"] == tiny_model.conditions
    assert "## Validation" in (folder / "README.md").read_text()

    # the test tensors are a simulated specimen at the conditions' inputs and grid
    frames = np.load(folder / "test_frames.npy")
    frame_z = np.load(folder / "test_frame_z_um.npy")
    planes = np.load(folder / "test_output_z_um.npy")
    volume = np.load(folder / "test_volume.npy")
    inputs_um, grid = sample_planes(tiny_model.conditions)
    assert frame_z[0].tolist() == pytest.approx(inputs_um)
    assert planes[0] == pytest.approx(grid)
    assert frames.shape == (1, len(inputs_um), 64, 64) and frames.std() > 0
    assert volume.shape == (1, len(grid), 64, 64)

    # ... and the volume is what `rmz-acq reconstruct` makes from them
    expected = reconstruct_frames(
        tiny_model,
        FrameSet(frames[0], np.asarray(inputs_um), 0.1),
        grid,
        device="cpu",
    )
    np.testing.assert_allclose(volume[0], expected, rtol=1e-5, atol=1e-4)

    # the weights load as the zoo loads them (state dict, weights_only) into the architecture
    module = RecurrentMZVolume(**weights["architecture"]["kwargs"])
    state = torch.load(folder / weights["source"], weights_only=True)
    module.load_state_dict(state, strict=True)
    with torch.no_grad():
        again = module(*(torch.from_numpy(a) for a in (frames, frame_z, planes))).numpy()
    np.testing.assert_allclose(again, volume, rtol=1e-5, atol=1e-4)


def test_a_package_is_a_model_zip_or_folder_with_one_checksum(
    tiny_model: LoadedModel, tmp_path: Path
) -> None:
    # weights that carry their own scan defaults (as `rmz-acq calibrate` writes them)
    chosen = ScanDefaults(candidate_step_fraction=0.5, relative_epsilon=0.03, next_plane="even")
    weights = save_weights(
        tiny_model.model,
        tmp_path / "tiny.safetensors",
        name="tiny",
        conditions=tiny_model.conditions,
        extra={SCAN_DEFAULTS_KEY: json.dumps(chosen._asdict())},
    )
    archive = export_bioimageio(weights, tmp_path / "tiny.zip")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unpacked")
    from_zip = load_model(archive)
    from_folder = load_model(tmp_path / "unpacked")
    assert from_zip.name == from_folder.name == "tiny"
    assert from_zip.sha256 == from_folder.sha256
    assert from_zip.conditions == tiny_model.conditions
    for a, b in zip(
        tiny_model.model.state_dict().values(), from_zip.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert from_zip.model.config == tiny_model.model.config
    # ... and a scan with the package stops and moves as one with the weights
    assert scan_defaults(from_zip) == scan_defaults(load_model(weights)) == chosen


def test_reconstruct_takes_a_package_as_model(
    tiny_model: LoadedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tifffile

    from rmz_acq.io import read_zstack

    archive = export_bioimageio(tiny_model.path, tmp_path / "tiny.zip")
    frames = np.load(io.BytesIO(zipfile.ZipFile(archive).read("test_frames.npy")))[0]
    z = ",".join(f"{v:g}" for v in sample_planes(tiny_model.conditions)[0])
    source = tmp_path / "frames.ome.tif"
    tifffile.imwrite(source, frames.astype(np.uint16), ome=True, metadata={"axes": "ZYX"})
    volumes = {}
    for name, model in (("zip", archive), ("weights", tiny_model.path)):
        out = tmp_path / f"{name}.ome.tif"
        args = ("--z", z, "--z-range", "0:4:0.5", "--pixel-size-um", "0.1", "-o", out)
        code, _, err = cli(capsys, "reconstruct", source, "--model", model, *args)
        assert code == 0, err
        volumes[name] = read_zstack(out).data
    np.testing.assert_array_equal(volumes["zip"], volumes["weights"])


def test_export_refusals(
    tiny_model: LoadedModel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "pkg.zip"
    out.write_text("already here")
    code, _, err = cli(capsys, "export-bioimageio", "-m", tiny_model.path, "-o", out)
    one_line_error(code, err, "--overwrite")
    code, _, err = cli(
        capsys, "export-bioimageio", "-m", tiny_model.path, "-o", tmp_path / "a", "--fov-px", "40"
    )
    one_line_error(code, err, "32 + 16 n")
    code, _, err = cli(capsys, "export-bioimageio", "-o", tmp_path / "b.zip")
    assert code == 2 and "--model" in err  # required: no preset is assumed
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    with pytest.raises(RmzError, match=r"rmz_acq\[bioimageio\]"):
        export_bioimageio(tiny_model.path, tmp_path / "c.zip")
    assert out.read_text() == "already here"


def test_a_package_of_another_network_is_refused(tiny_model: LoadedModel, tmp_path: Path) -> None:
    folder = export_bioimageio(tiny_model.path, tmp_path / "zoo")
    rdf = _description(folder)
    rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] = "UNet2d"
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    with pytest.raises(RmzError, match="not Recurrent-MZ"):
        load_model(folder)
    with pytest.raises(RmzError, match=r"no rdf\.yaml"):
        bad = tmp_path / "other.zip"
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr("model.yaml", "name: x")
        load_model(bad)


@pytest.mark.slow
# widefield is nuclei's architecture, conditions and export path: .ci/run checks its package
@pytest.mark.parametrize("preset", ["beads", "nuclei"])
def test_bioimageio_test_passes_for_the_presets(preset: str, tmp_path: Path) -> None:
    """The zoo's own check, as `bioimageio test OUT.zip` runs it."""
    import subprocess

    # nuclei carries a linear blend: the package holds its network alone, with a warning.
    # (Recorded by hand: bioimageio's packaging leaves a file for the garbage collector,
    # whose ResourceWarning pytest.warns would turn into an error.)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        archive = export_bioimageio(preset, tmp_path / f"{preset}.zip")
    said = [w for w in caught if issubclass(w.category, DataWarning)]
    assert [w for w in caught if not issubclass(w.category, (DataWarning, ResourceWarning))] == []
    if load_model(preset).linear_blend is None:
        assert said == []
    else:
        assert len(said) == 1 and "linear blend" in str(said[0].message)
    bioimageio = Path(sys.executable).with_name("bioimageio")
    result = subprocess.run(
        [str(bioimageio), "test", str(archive)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Reproduce test outputs" in result.stdout + result.stderr
    assert "❌" not in result.stdout
