"""Screenshot of the live viewer during an adaptive scan (for the README).

    python benchmarks/screenshot_viewer.py [--out benchmarks/figures/viewer.png] [--after 3]

Runs the default scan of the simulated worm (nuclei preset) with the viewer
on an offscreen Qt platform and grabs the window after the given number of
frames.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from rmz_acq.acquisition import AdaptiveScan, ScanPlan, ScanSettings
from rmz_acq.hardware import load_core
from rmz_acq.model.weights import load_model
from rmz_acq.preview.viewer import ScanViewer, start_scan

CONFIG = Path(__file__).resolve().parents[1] / "device_configs" / "simulated_worm.cfg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/figures/viewer.png")
    parser.add_argument("--after", type=int, default=3)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    core = load_core(CONFIG)
    planes = np.round(np.arange(0, 18.0001, 0.2), 6)
    plan = ScanPlan.build(planes, candidates_um=[3, 6, 9, 12, 15])
    settings = ScanSettings(relative_epsilon=0.1)
    with tempfile.TemporaryDirectory() as tmp:
        scan = AdaptiveScan(core, load_model("nuclei"), plan, settings, Path(tmp) / "run")
        viewer = ScanViewer(0.1, relative_epsilon=0.1)
        viewer.resize(1000, 560)
        viewer.show()
        worker = start_scan(scan, viewer)
        timer = QTimer()

        def poll() -> None:
            if len(viewer.updates) >= args.after or not worker.is_alive():
                if not Path(args.out).exists():
                    viewer.grab().save(args.out)
                    scan.cancel()
                if not worker.is_alive():
                    app.quit()

        timer.timeout.connect(poll)
        timer.start(100)
        app.exec()
        worker.join()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
