"""Comparing two models volume by volume (benchmarks/compare_scores.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_scores.py"


def _volume(rmz: float, lin: float, truth_rmz: float, truth_lin: float) -> dict:
    def scores(r: float, li: float) -> dict:
        return {
            "recurrent_mz": {"psnr": r},
            "linear_interpolation": {"psnr": li},
        }

    return {"per_volume": scores(rmz, lin), "truth_scale": scores(truth_rmz, truth_lin)}


def _write(path: Path, name: str, volumes: list[dict], spread: float = 0.2) -> Path:
    run = {
        "model": {"name": name, "sha256": "0" * 64},
        "rows": {"cells": {"volumes": volumes, "order_spread_db": spread}},
    }
    path.write_text(json.dumps(run))
    return path


def _run(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True
    )


def _compare(tmp_path: Path, a: list[dict], b: list[dict]) -> subprocess.CompletedProcess[str]:
    return _run(_write(tmp_path / "a.json", "A", a), _write(tmp_path / "b.json", "B", b))


# Volume 0 is hard for model A and volume 1 easy: the row spreads by 10 dB.
HARD_AND_EASY = [_volume(20.0, 19.0, 21.0, 20.0), _volume(30.0, 29.0, 31.0, 30.0)]


def test_the_difference_is_paired_volume_by_volume(tmp_path: Path) -> None:
    # B beats A on both volumes, by 0.4 and 0.6 dB.
    b = [_volume(20.4, 19.0, 21.2, 20.0), _volume(30.6, 29.0, 31.2, 30.0)]
    done = _compare(tmp_path, HARD_AND_EASY, b)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("cells"))
    # margins over interpolation +1.00 and +1.50; B - A per volume 0.50 +- 0.10
    # (paired), truth scale 0.20 with no spread
    assert "+1.00  +1.50" in row
    assert "+0.50 ± 0.10" in row
    assert "+0.20 ± 0.00" in row


def test_files_scored_on_other_volumes_are_refused(tmp_path: Path) -> None:
    # interpolation scores 20.5 dB on B's first volume, 20.0 on A's
    b = [_volume(20.4, 19.0, 21.2, 20.5), _volume(30.6, 29.0, 31.2, 30.0)]
    done = _compare(tmp_path, HARD_AND_EASY, b)
    assert done.returncode != 0
    assert "not scored on the same volumes" in done.stderr
    assert "volume 0" in done.stderr


def test_a_file_without_per_volume_scores_is_refused(tmp_path: Path) -> None:
    a = tmp_path / "old.json"
    a.write_text(json.dumps({"model": {"name": "A", "sha256": "0" * 64}, "rows": {"cells": {}}}))
    b = _write(tmp_path / "b.json", "B", [_volume(20.0, 19.0, 21.0, 20.0)])
    done = _run(a, b)
    assert done.returncode != 0
    assert "score the model again" in done.stderr


def test_one_volume_gives_no_standard_error(tmp_path: Path) -> None:
    done = _compare(tmp_path, [_volume(20.0, 19.0, 21.0, 20.0)], [_volume(20.5, 19.0, 21.0, 20.0)])
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("cells"))
    assert "±" not in row and "+0.50" in row


def test_order_spreads_are_taken_over_the_paired_volumes(tmp_path: Path) -> None:
    def orders(spread: float) -> list[dict]:
        return [{"z_um": [3, 9, 15], "psnr_db": 30.0}, {"z_um": [9, 3, 15], "psnr_db": 30 + spread}]

    a = _write(tmp_path / "a.json", "A", HARD_AND_EASY)
    run = json.loads(a.read_text())
    # A's second volume spreads 1.5 dB over its orders; B holds only the first volume
    run["rows"]["cells"]["orders"] = [orders(0.25), orders(1.5)]
    a.write_text(json.dumps(run))
    b = _write(tmp_path / "b.json", "B", HARD_AND_EASY[:1])
    run = json.loads(b.read_text())
    run["rows"]["cells"]["orders"] = [orders(0.125)]
    b.write_text(json.dumps(run))
    done = _run(a, b)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("cells"))
    assert row.split("|")[-1].split() == ["0.25", "0.12"]
