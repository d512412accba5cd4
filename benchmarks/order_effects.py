"""Which frame orders cost what, and which of them the tool pushes.

    python benchmarks/order_effects.py RUN.json

Reads a ``generalisation.py --json`` output (with its frame-order check,
that is without ``--no-orders``) and prints, per row, what each order of
the input frames did to Recurrent-MZ's PSNR (truth's scale, the plane
subset of the ``orders`` column): the order's PSNR minus the mean over all
the orders of the same volume, averaged over the row's volumes, ± its
standard error.  An order is written by the ranks of its frames' z, 1 the
lowest: ``2-1-3`` pushes the middle frame first, then the lowest, then the
highest.

Then the spread the ``orders`` column reports (the widest volume of the
row, best order minus worst), the same spread over only the orders that
push an outer frame (the lowest or the highest) last, and how far below
each volume's best order land the two orders this tool pushes three
evenly spaced frames in: sorted by z (``rmz-acq reconstruct`` and a scan's
final volume rebuilt by z) and bisection, middle first (a live scan's
default plan, 9, 3, 15 um).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def ranks(z_um: list[float]) -> tuple[int, ...]:
    """Rank of each pushed frame's z, 1 the lowest, in push order."""
    by_z = sorted(z_um)
    return tuple(by_z.index(z) + 1 for z in z_um)


def label(order: tuple[int, ...]) -> str:
    return "-".join(str(r) for r in order)


def outer_last(order: tuple[int, ...]) -> bool:
    """The last frame pushed is the lowest or the highest."""
    return order[-1] in (1, len(order))


def bisection(n: int) -> tuple[int, ...]:
    """Rank order of a bisection plan over ``n`` evenly spaced frames (middle, then halves)."""
    if n != 3:
        raise ValueError(f"bisection order is tabulated for three frames, not {n}")
    return (2, 1, 3)


def volume_orders(orders: list[dict[str, Any]]) -> dict[tuple[int, ...], float]:
    """PSNR of each order of one volume, keyed by rank order."""
    return {ranks(o["z_um"]): float(o["psnr_db"]) for o in orders}


def row_effects(volumes: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Per order, mean and SE over the volumes of its PSNR minus the volume's mean; spreads."""
    per_volume = [volume_orders(v) for v in volumes]
    keys = sorted(per_volume[0])
    if any(sorted(v) != keys for v in per_volume):
        raise SystemExit("the row's volumes were scored with different frame orders")
    deviations = np.array([[v[k] - np.mean(list(v.values())) for k in keys] for v in per_volume])
    n = len(per_volume)
    se = deviations.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(len(keys), np.nan)
    outer = [k for k in keys if outer_last(k)]
    z_sorted = tuple(range(1, len(keys[0]) + 1))
    return {
        "orders": keys,
        "mean": deviations.mean(axis=0),
        "se": se,
        "spread_all": max(max(v.values()) - min(v.values()) for v in per_volume),
        "spread_outer_last": max(
            max(v[k] for k in outer) - min(v[k] for k in outer) for v in per_volume
        ),
        "z_sorted_below_best": float(np.mean([max(v.values()) - v[z_sorted] for v in per_volume])),
        "bisection_below_best": float(
            np.mean([max(v.values()) - v[bisection(len(z_sorted))] for v in per_volume])
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="generalisation.py --json output")
    args = parser.parse_args()
    run = json.loads(args.run.read_text())
    rows = {name: row["orders"] for name, row in run["rows"].items() if row.get("orders")}
    if not rows:
        raise SystemExit(
            f"{args.run} holds no frame-order scores: score it with generalisation.py "
            "without --no-orders"
        )
    print(f"{run['model']['name']} ({run['model']['sha256'][:8]}), {args.run}")
    print(
        "each order's PSNR (truth's scale) minus the mean over its volume's orders, dB, "
        "mean over the volumes ± standard error; ranks of z in push order, 1 the lowest"
    )
    effects = {name: row_effects(volumes) for name, volumes in rows.items()}
    keys = next(iter(effects.values()))["orders"]
    print(
        f"{'row':<13} {'n':>2} | "
        + " ".join(f"{label(k):>11}" for k in keys)
        + f" | {'spread':>6} {'outer last':>10} | {'below best: z-sorted':>20} {'bisection':>9}"
    )
    for name, e in effects.items():
        cells = [
            f"{m:+.2f} ± {s:.2f}" if np.isfinite(s) else f"{m:+.2f}"
            for m, s in zip(e["mean"], e["se"], strict=True)
        ]
        print(
            f"{name:<13} {len(rows[name]):>2} | "
            + " ".join(f"{c:>11}" for c in cells)
            + f" | {e['spread_all']:>6.2f} {e['spread_outer_last']:>10.2f} | "
            f"{e['z_sorted_below_best']:>20.2f} {e['bisection_below_best']:>9.2f}"
        )


if __name__ == "__main__":
    main()
