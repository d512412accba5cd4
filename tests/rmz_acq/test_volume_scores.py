"""Each volume's margins and a row's median (benchmarks/volume_scores.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "volume_scores.py"


def _scores(rmz: float, lin: float, single: float) -> dict:
    return {
        "recurrent_mz": {"psnr": rmz},
        "linear_interpolation": {"psnr": lin},
        "single_input": {"psnr": single},
    }


def _script_output(tmp_path: Path, rows: dict) -> subprocess.CompletedProcess[str]:
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"model": {"name": "M", "sha256": "f" * 64}, "rows": rows}))
    return subprocess.run([sys.executable, str(SCRIPT), str(run)], capture_output=True, text=True)


def test_one_far_volume_moves_the_mean_and_not_the_median(tmp_path: Path) -> None:
    # margins over interpolation per volume +1, +1, +1, +9; over single-input
    # +0.5 on each; on the truth's scale +2, -1, +2, +2
    per_volume = [(21.0, 20.0), (21.0, 20.0), (21.0, 20.0), (29.0, 20.0)]
    truth = [(32.0, 30.0), (29.0, 30.0), (32.0, 30.0), (32.0, 30.0)]
    volumes = [
        {"per_volume": _scores(r, li, r - 0.5), "truth_scale": _scores(tr, tl, tr)}
        for (r, li), (tr, tl) in zip(per_volume, truth, strict=True)
    ]
    orders = [[{"z_um": [3, 9, 15], "psnr_db": 30.0}, {"z_um": [9, 3, 15], "psnr_db": 30.4}]] * 4
    done = _script_output(tmp_path, {"cells": {"volumes": volumes, "orders": orders}})
    assert done.returncode == 0, done.stderr
    summary, listing = (
        [line for line in done.stdout.splitlines() if line.startswith("cells")][i] for i in (0, 1)
    )
    interp, single, truth_scale = (cell.split() for cell in summary.split("|")[1:])
    # mean +3.00, standard error 2.00 (sd 4 over 4 volumes), median +1.00, none below
    assert interp == ["+3.00", "±", "2.00", "+1.00", "0"]
    assert single == ["+0.50", "±", "0.00", "+0.50", "0"]
    assert truth_scale == ["+1.25", "±", "0.75", "+2.00", "1"]
    margins = " ".join(listing.split("|")[0].split()[1:])
    assert margins == "+1.00/ +2.00 +1.00/ -1.00 +1.00/ +2.00 +9.00/ +2.00"
    assert listing.endswith("orders 0.40 0.40 0.40 0.40")


def test_a_run_without_per_volume_scores_is_refused(tmp_path: Path) -> None:
    done = _script_output(tmp_path, {"cells": {"order_spread_db": 0.2}})
    assert done.returncode != 0
    assert "score the model again" in done.stderr
