"""Training with DistributedDataParallel: two CPU processes (gloo) through torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rmz_acq.model.weights import load_model
from tests.rmz_acq.test_cli_stack import rmz_acq

ARGS = (
    "--preset", "beads", "--volumes", "2", "--crop", "32", "--fov", "64", "--batch", "2",
    "--targets", "1", "--base-channels", "2", "--depth", "2", "--steps", "4",
    "--checkpoint-every", "2",
)  # fmt: skip


def _torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "rmz_acq"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*command, "train", *ARGS, *extra, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_model(run / "model.safetensors").model.state_dict()


@pytest.mark.slow
def test_two_processes_train_one_model_reproducibly_and_resume(tmp_path: Path) -> None:
    first = _torchrun(tmp_path / "a")
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("wrote") == 1  # rank 0 alone reports and writes
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert log and all(record["world_size"] == 2 for record in log)
    assert len({record["step"] for record in log}) == len(log)  # one writer
    again = _torchrun(tmp_path / "b")
    assert again.returncode == 0, again.stderr[-2000:]
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    stopped = _torchrun(tmp_path / "c", "--stop-after", "2")
    assert stopped.returncode == 0 and "run again to resume" in stopped.stdout
    resumed = _torchrun(tmp_path / "c")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    c = _weights(tmp_path / "c")
    for key in a:
        torch.testing.assert_close(a[key], c[key], rtol=0, atol=0)
    alone = rmz_acq("train", *ARGS, "-o", tmp_path / "d")  # one process: rank 1's batches missing
    assert alone.returncode == 0, alone.stderr
    d = _weights(tmp_path / "d")
    assert any(not torch.equal(a[key], d[key]) for key in a)
