"""Each held-out volume's margins, and what a row's mean hides.

    python benchmarks/volume_scores.py RUN.json

Reads a ``generalisation.py --json`` output and prints, per row, Recurrent-MZ's
margin over linear interpolation and over single-input propagation (the
paper's per-volume normalisation, as the issue's targets are stated) and
over interpolation on the truth's scale: mean ± standard error, median,
and how many volumes fall below the baseline; then every volume's margins
and its spread over the frame orders, in seed order.  One specimen far
ahead (or, through the per-volume normalisation's threshold, far behind)
moves a mean of a few volumes by more than the targets' margins; the
median does not follow it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from compare_scores import require_volumes, volume_spread  # beside this script

MARGINS = (
    ("interp.", "per_volume", "linear_interpolation"),
    ("single", "per_volume", "single_input"),
    ("interp., truth", "truth_scale", "linear_interpolation"),
)


def margins(volume: dict[str, Any]) -> list[float]:
    """Recurrent-MZ minus each baseline of MARGINS, PSNR in dB, for one volume."""
    return [
        volume[scale]["recurrent_mz"]["psnr"] - volume[scale][baseline]["psnr"]
        for _, scale, baseline in MARGINS
    ]


def summary(values: list[float]) -> str:
    v = np.asarray(values)
    se = f"{np.std(v, ddof=1) / np.sqrt(len(v)):.2f}" if len(v) > 1 else "-"
    return f"{v.mean():+6.2f} ± {se:>4} {np.median(v):+6.2f} {int((v < 0).sum()):>2}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="generalisation.py --json output")
    args = parser.parse_args()
    run = json.loads(args.run.read_text())
    require_volumes(args.run, run)
    rows = {name: row for name, row in run["rows"].items() if row.get("volumes")}
    print(f"{run['model']['name']} ({run['model']['sha256'][:8]}), {args.run}")
    print(
        "Recurrent-MZ's margin in dB over each baseline: mean ± standard error, median, "
        "volumes below it"
    )
    print(
        f"{'row':<13} {'n':>2} | "
        + " | ".join(f"{name:^23}" for name, _, _ in MARGINS)
        + f"\n{'':<13} {'':>2} | "
        + " | ".join(f"{'mean':>6} {'± se':>6} {'median':>6} {'<0':>2}" for _ in MARGINS)
    )
    for name, row in rows.items():
        per_volume = np.array([margins(v) for v in row["volumes"]])
        print(
            f"{name:<13} {len(per_volume):>2} | "
            + " | ".join(summary(list(per_volume[:, i])) for i in range(len(MARGINS)))
        )
    print(
        "\neach volume in seed order: margin over interpolation per volume / on the truth's "
        "scale, dB; then its spread over the frame orders"
    )
    for name, row in rows.items():
        cells = [f"{a:+6.2f}/{c:+6.2f}" for a, _, c in (margins(v) for v in row["volumes"])]
        spreads = [volume_spread(orders) for orders in row.get("orders") or []]
        print(
            f"{name:<13} "
            + " ".join(cells)
            + (" | orders " + " ".join(f"{s:.2f}" for s in spreads) if spreads else "")
        )


if __name__ == "__main__":
    main()
