"""Weights from a training checkpoint, with the metadata `rmz-acq train` writes.

    python benchmarks/gpu/checkpoint_weights.py CHECKPOINT.pt --init INIT.safetensors \
        --name widefield -o OUT.safetensors

For a run stopped before its end (the lease's outer timeout killed it): the
checkpoint holds the network and the run's settings, the ``--init`` weights
the stages before it (and, for a run trained ``--through-blend S``, the
linear blend the weights are written with, at share ``S``).
"""

from __future__ import annotations

import argparse
import json

import torch

from rmz_acq.model import load_model
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import save_weights, training_stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--init", required=True, help="the weights the run started from")
    parser.add_argument("--name", required=True)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    init = load_model(args.init)
    model = RecurrentMZ.from_config(init.model.config)
    model.load_state_dict(state["model"])
    settings = json.loads(state["settings"])
    extra = {"training": json.dumps(settings), "stopped_at_step": str(state["step"])}
    earlier = training_stages(init.metadata)
    if earlier:
        extra["earlier_training"] = json.dumps(earlier)
    # a run trained through the init's blend (--through-blend S) ships with it at share S
    share, blend = settings.get("through_blend"), init.linear_blend
    blend = None if share is None or blend is None else blend.with_weight(share)
    path = save_weights(
        model, args.output, name=args.name, conditions=init.conditions, extra=extra,
        linear_blend=blend,
    )  # fmt: skip
    print(f"wrote {path} (step {state['step']})")


if __name__ == "__main__":
    main()
