"""The run folder is named and read in one place; the scan never imports the preview."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import rmz_acq
from rmz_acq.errors import RmzError
from rmz_acq.io.outputs import RUN_FILES
from rmz_acq.io.run_folder import FRAMES, REPORT, VOLUME, RunFiles, RunReport


def _imports(package: Path) -> set[str]:
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(("." * node.level) + node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return found


def test_acquisition_never_imports_the_preview_and_only_io_names_run_files() -> None:
    root = Path(rmz_acq.__file__).parent
    acquisition = _imports(root / "acquisition")
    assert not [m for m in acquisition if "preview" in m], acquisition
    # the file names live in io/run_folder.py: no other module spells them out
    spelled = []
    for path in root.rglob("*.py"):
        if path.name == "run_folder.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in (FRAMES, REPORT, VOLUME):
                spelled.append(f"{path.relative_to(root)}:{node.lineno} {node.value}")
    assert not spelled, spelled


def test_run_files_and_report(tmp_path: Path) -> None:
    files = RunFiles(tmp_path)
    assert files.frames.name in RUN_FILES and files.report.name in RUN_FILES
    assert not files.finished
    with pytest.raises(RmzError, match=r"has no report\.json"):
        RunReport.read(tmp_path)
    files.report.write_text("[1, 2]")
    with pytest.raises(RmzError, match="not a scan report"):
        RunReport.read(tmp_path)
    files.report.write_text("{not json")
    with pytest.raises(RmzError, match="cannot be read as JSON"):
        RunReport.read(files.report)
    files.report.write_text(json.dumps({"stop_reason": "converged", "frames": []}))
    report = RunReport.read(tmp_path)
    assert report.stop_reason == "converged" and report.frames == []
    with pytest.raises(RmzError, match="lacks 'output_planes_um'"):
        _ = report.output_planes_um
    files.report.write_text(
        json.dumps({"output_planes_um": [0, 0.5], "epsilon": 0.05, "relative_epsilon": 0.05})
    )
    report = RunReport.read(tmp_path)
    assert report.output_planes_um == [0.0, 0.5]
    assert report.relative_epsilon == 0.05 and report.absolute_epsilon is None
    files.volume.write_bytes(b"")
    assert files.finished
