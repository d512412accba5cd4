"""Is one model better than another, beyond which volumes were drawn?

    python benchmarks/compare_scores.py A.json B.json

Reads two ``generalisation.py --json`` outputs scored on the same held-out
volumes (same preset protocol, rows and ``--volumes``; the seeds are fixed)
and prints, per row, B minus A volume by volume: the mean difference of
Recurrent-MZ's PSNR with per-volume normalisation and on the truth's scale,
each with its paired standard error.  Pairing takes out what the volumes
have in common (how hard that seed's specimen is), which dominates a row's
own spread, so a difference between two models is measured far more
tightly than either row alone.  A difference within about two standard
errors of zero is not one this benchmark can tell.

Where one file holds more volumes than the other, the first ``n`` of each
are paired (the seeds run in the same order).  The ``orders`` columns are
each row's widest spread over the frame orders on those ``n`` volumes
(over all its volumes where a file lacks each volume's orders).  Refuses two files whose
interpolation baselines differ on any paired volume: they were not scored
on the same volumes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

SCALES = ("per_volume", "truth_scale")


def paired(a: list[dict[str, Any]], b: list[dict[str, Any]], scale: str) -> tuple[float, float]:
    """Mean and standard error of B - A (Recurrent-MZ PSNR on ``scale``), volume by volume."""
    pairs = zip(a, b, strict=True)
    d = np.array([vb[scale]["recurrent_mz"]["psnr"] - va[scale]["recurrent_mz"]["psnr"]
                  for va, vb in pairs])  # fmt: skip
    se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(np.mean(d)), se


def same_volumes(row: str, a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    """Refuse volumes whose interpolation baseline differs: they are not the same data."""
    for i, (va, vb) in enumerate(zip(a, b, strict=True)):
        la = va["truth_scale"]["linear_interpolation"]["psnr"]
        lb = vb["truth_scale"]["linear_interpolation"]["psnr"]
        if abs(la - lb) > 1e-6:
            raise SystemExit(
                f"row {row!r}, volume {i}: linear interpolation scores {la:.4f} dB in one file "
                f"and {lb:.4f} dB in the other, so they were not scored on the same volumes; "
                "score both with the same --preset and --volumes"
            )


def margin(volumes: list[dict[str, Any]]) -> float:
    """A row's mean margin over interpolation, per-volume normalisation."""
    return float(
        np.mean(
            [
                v["per_volume"]["recurrent_mz"]["psnr"]
                - v["per_volume"]["linear_interpolation"]["psnr"]
                for v in volumes
            ]
        )
    )


def volume_spread(orders: list[dict[str, Any]]) -> float:
    """Best minus worst PSNR over one volume's frame orders (a ``--json`` ``orders`` entry)."""
    return max(o["psnr_db"] for o in orders) - min(o["psnr_db"] for o in orders)


def order_spread(row: dict[str, Any], n: int) -> float:
    """Widest spread over the frame orders among the row's first ``n`` volumes."""
    orders = row.get("orders") or []
    if len(orders) < n:
        return float(row["order_spread_db"])
    return max(volume_spread(volume) for volume in orders[:n])


def require_volumes(path: Path, run: dict[str, Any]) -> None:
    """Refuse a ``--json`` output written before each volume's scores were kept."""
    if not any(row.get("volumes") for row in run["rows"].values()):
        raise SystemExit(
            f"{path} holds no per-volume scores: it was written before generalisation.py "
            "kept them; score the model again"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="generalisation.py --json output, model A")
    parser.add_argument("b", type=Path, help="the same for model B")
    args = parser.parse_args()
    runs = [json.loads(path.read_text()) for path in (args.a, args.b)]
    for path, run in zip((args.a, args.b), runs, strict=True):
        require_volumes(path, run)
    a, b = runs
    print(f"A: {a['model']['name']} ({a['model']['sha256'][:8]}), {args.a}")
    print(f"B: {b['model']['name']} ({b['model']['sha256'][:8]}), {args.b}")
    print("B - A, Recurrent-MZ PSNR in dB, mean over the volumes ± paired standard error")
    print(
        f"{'row':<13} {'n':>2} | {'A -lin':>6} {'B -lin':>6} | {'per volume':>14} "
        f"{'truth scale':>14} | {'orders A':>8} {'B':>5}"
    )
    for row, ra in a["rows"].items():
        rb = b["rows"].get(row)
        if rb is None or "volumes" not in ra or "volumes" not in rb:
            continue
        n = min(len(ra["volumes"]), len(rb["volumes"]))
        va, vb = ra["volumes"][:n], rb["volumes"][:n]
        same_volumes(row, va, vb)
        cells = []
        for scale in SCALES:
            mean, se = paired(va, vb, scale)
            cells.append(f"{mean:>+7.2f} ± {se:.2f}" if np.isfinite(se) else f"{mean:>+14.2f}")
        print(
            f"{row:<13} {n:>2} | {margin(va):>+6.2f} {margin(vb):>+6.2f} | "
            + " ".join(f"{c:>14}" for c in cells)
            + f" | {order_spread(ra, n):>8.2f} {order_spread(rb, n):>5.2f}"
        )


if __name__ == "__main__":
    main()
