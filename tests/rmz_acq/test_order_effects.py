"""What each frame order costs (benchmarks/order_effects.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import permutations
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "order_effects.py"


def _orders(base: float, middle_last: float, z_sorted: float = 0.0) -> list[dict]:
    """Six orders of frames at 3, 9, 15 um; ``middle_last`` added where 9 is pushed last."""
    orders = []
    for z in permutations([3.0, 9.0, 15.0]):
        psnr = base + (middle_last if z[-1] == 9.0 else 0.0)
        psnr += z_sorted if list(z) == [3.0, 9.0, 15.0] else 0.0
        orders.append({"z_um": list(z), "psnr_db": psnr})
    return orders


def _run(tmp_path: Path, rows: dict) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": {"name": "M", "sha256": "0" * 64}, "rows": rows}))
    return subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True)


def test_each_order_is_measured_against_its_volume_and_the_spreads_split(tmp_path: Path) -> None:
    # Two volumes 10 dB apart; pushing the middle frame last costs 0.6 dB on
    # the first and 1.0 on the second, and z order gains 0.6 on the first.
    volumes = [_orders(20.0, -0.6, z_sorted=0.6), _orders(30.0, -1.0)]
    done = _run(tmp_path, {"cells": {"orders": volumes}})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("row"))
    row = next(line for line in lines if line.startswith("cells"))
    cells = [c.strip() for c in row.split("|")]
    assert header.split("|")[1].split() == ["1-2-3", "1-3-2", "2-1-3", "2-3-1", "3-1-2", "3-2-1"]
    # volume 1 has mean 19.9, so 1-2-3 (20.6) is +0.7 over it and 1-3-2 (19.4)
    # -0.5; volume 2 has mean 29.67, 1-2-3 +0.33 and 1-3-2 -0.67
    assert cells[1].startswith("+0.52 ± 0.18 -0.58 ± 0.08")
    spread_all, spread_outer = cells[2].split()
    assert spread_all == "1.20"  # the widest volume, all six orders
    assert spread_outer == "0.60"  # the orders ending on an outer frame differ only by z order
    z_sorted, bisect = cells[3].split()
    assert z_sorted == "0.00"  # z order is the best order of both volumes
    assert bisect == "0.30"  # bisection (2-1-3): 0.6 below the best on volume 1, level on 2


def test_a_run_without_order_scores_is_refused(tmp_path: Path) -> None:
    done = _run(tmp_path, {"cells": {"orders": []}})
    assert done.returncode != 0
    assert "without --no-orders" in done.stderr
