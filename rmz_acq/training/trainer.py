"""Training loop: Adam, resumable checkpoints, validation, reproducible.

Every batch is drawn from a generator seeded by ``(seed, step)``, and the
network has no random layers, so a run resumed from a checkpoint continues
exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from itertools import repeat
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..compute import resolve_device
from ..errors import RmzError
from ..evaluation.metrics import psnr
from ..linear_blend import LinearBlend
from ..model.losses import (
    Discriminator,
    discriminator_loss,
    generator_adversarial_loss,
    lowpass_error,
    order_gap,
    reconstruction_loss,
    rescale_knee,
)
from ..model.network import RecurrentMZ, grow_depth, grow_width
from ..model.normalization import ENERGY_COMPRESSION, IntensityMethod, IntensityNormalization
from ..model.weights import save_weights
from . import distributed
from .conditions import ImagingConditions
from .data import (
    Batch,
    SimulatedVolume,
    StackVolume,
    TrainingSampler,
    make_simulated_volume,
)
from .distributed import Ranks
from .settings import TrainingSettings

__all__ = ["TrainingSettings", "TrainingSummary", "train"]

# Seeds of simulated volumes: training draws from [0, 10000) + 1000 * seed,
# validation from 10000 up, and model-card evaluations from 20000 up, so no
# model is ever scored on a volume it was trained or validated on.
VALIDATION_SEED = 10_000
EVALUATION_SEED = 20_000


def _settings_volume(
    conditions: ImagingConditions, settings: TrainingSettings, seed: int
) -> SimulatedVolume:
    """Simulated volume ``seed`` with the varieties ``settings`` allow."""
    return make_simulated_volume(
        conditions,
        seed,
        settings.fov_px,
        settings.psf_models,
        settings.sample_varieties,
        structure_families=settings.structure_families,
        optics_varieties=settings.optics_varieties,
        thin_fraction=settings.thin_fraction,
    )


def _simulate(
    conditions: ImagingConditions,
    seeds: list[int],
    settings: TrainingSettings,
    workers: int,
    notify: Callable[[str, int, int, dict[str, float]], None],
) -> list[SimulatedVolume]:
    """The training volumes, in ``workers`` spawned processes when above 1."""
    if workers <= 1:
        volumes = []
        for i, seed in enumerate(seeds):
            volumes.append(_settings_volume(conditions, settings, seed))
            notify("simulating", i + 1, len(seeds), {})
        return volumes
    # spawned, not forked: forking a process that has run torch can hang
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        volumes = []
        for volume in pool.map(_settings_volume, repeat(conditions), repeat(settings), seeds):
            volumes.append(volume)
            notify("simulating", len(volumes), len(seeds), {})
        return volumes


class _BatchStream(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """Batches ``start .. stop - 1``; worker k of n draws steps k, k + n, ...

    A batch depends only on ``(seed, step)`` and the loader returns the
    workers' batches in turn, so they arrive in step order and a run gives
    the same weights with any number of workers.
    """

    def __init__(
        self, sampler: TrainingSampler, seed: int, start: int, stop: int, rank: int | None = None
    ) -> None:
        self.sampler, self.seed, self.start, self.stop = sampler, seed, start, stop
        self.rank = rank  # None: one process (the seeds runs have always used)

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        first, stride = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start + first, self.stop, stride):
            key = [self.seed, step] if self.rank is None else [self.seed, step, self.rank]
            yield self.sampler.sample(np.random.default_rng(key))


def _batches(
    sampler: TrainingSampler,
    seed: int,
    start: int,
    stop: int,
    workers: int,
    rank: int | None = None,
) -> Iterator[Batch]:
    stream = _BatchStream(sampler, seed, start, stop, rank)
    if workers <= 0:
        return iter(stream)
    # Forked workers share the volumes instead of each receiving a copy;
    # they only slice numpy arrays, so torch's thread pools are never used there.
    context = "fork" if sys.platform == "linux" else "spawn"
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        multiprocessing_context=context,
        prefetch_factor=4,
    )
    return iter(loader)


class _Adversary:
    """The discriminator of eq. 10 and its optimiser, for ``adversarial_weight > 0``."""

    def __init__(self, weight: float, learning_rate: float, device: torch.device) -> None:
        self.weight = weight
        self.net = Discriminator().to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=learning_rate)

    def generator_term(self, prediction: torch.Tensor) -> torch.Tensor:
        """``gamma [D(y_hat) - 1]^2``, to add to the generator's loss."""
        return self.weight * generator_adversarial_loss(self.net(prediction))

    def update(self, prediction: torch.Tensor, target: torch.Tensor, lr: float) -> float:
        """One step of the discriminator on this batch (eq. 10); returns its loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = discriminator_loss(self.net(prediction.detach()), self.net(target))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def state(self) -> dict[str, Any]:
        return {
            "discriminator": self.net.state_dict(),
            "discriminator_optimizer": self.optimizer.state_dict(),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["discriminator_optimizer"])


@dataclass(frozen=True)
class TrainingSummary:
    weights: Path | None  # None when stopped early (resume to finish)
    steps: int
    seconds: float
    last_validation: dict[str, float]


def _validation_set(
    volumes: list[SimulatedVolume] | list[StackVolume],
    spacing_um: float,
    intensity: IntensityMethod,
    planes: int = 6,
) -> list[tuple[np.ndarray, list[float], list[np.ndarray], list[float], IntensityNormalization]]:
    """Fixed full-frame checks: three evenly spaced inputs, targets between."""
    rng = np.random.default_rng(1234)
    cases = []
    for volume in volumes:
        lo, hi = volume.z_range_um
        centre = (lo + hi) / 2
        z_in = [centre - spacing_um, centre, centre + spacing_um]
        z_in = [float(np.clip(z, lo, hi)) for z in z_in]
        frames = [volume.frame(z, rng) for z in z_in]
        norm = IntensityNormalization.from_frame(frames[0], method=intensity)
        z_out = [float(z) for z in np.linspace(z_in[0], z_in[-1], planes + 2)[1:-1]]
        targets = [norm.apply(volume.target(z)) for z in z_out]
        cases.append((np.stack([norm.apply(f) for f in frames]), z_in, targets, z_out, norm))
    return cases


def _validate(model: RecurrentMZ, cases: list[Any], device: torch.device) -> dict[str, float]:
    model.eval()
    scores, linear_scores = [], []
    with torch.inference_mode():
        for frames, z_in, targets, z_out, _ in cases:
            height, width = frames.shape[1:]
            crop_h, crop_w = height - height % model.multiple, width - width % model.multiple
            f = torch.from_numpy(frames[:, :crop_h, :crop_w]).to(device)
            for target, z in zip(targets, z_out, strict=True):
                dpm = torch.tensor([[z - zi for zi in z_in]], device=device)
                out = model(f[None], dpm)[0, 0].cpu().numpy()
                truth = target[:crop_h, :crop_w]
                scores.append(psnr(out, truth))
                order = np.argsort(z_in)
                zs = np.asarray(z_in)[order]
                stack = frames[order][:, :crop_h, :crop_w]
                j = int(np.clip(np.searchsorted(zs, z) - 1, 0, len(zs) - 2))
                t = float(np.clip((z - zs[j]) / (zs[j + 1] - zs[j]), 0, 1))
                linear_scores.append(psnr((1 - t) * stack[j] + t * stack[j + 1], truth))
    model.train()
    return {
        "psnr": float(np.mean(scores)),
        "linear_psnr": float(np.mean(linear_scores)),
    }


def _learning_rate(settings: TrainingSettings, step: int, elapsed: float | None = None) -> float:
    """Warm-up, then cosine decay to a twentieth over the steps.

    ``elapsed`` (0-1), when given, is how much of a time budget is spent;
    the decay then follows the clock instead of the step count, so that a
    run ended by its time limit ends at the low rate, not in mid-schedule.
    """
    warmup = min(100, settings.steps // 10)
    if step < warmup:
        return settings.learning_rate * (step + 1) / warmup
    if elapsed is not None:
        progress = min(1.0, max(0.0, elapsed))
    else:
        progress = (step - warmup) / max(1, settings.steps - warmup)
    floor = settings.learning_rate / 20
    return floor + (settings.learning_rate - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def train(
    output_dir: str | Path,
    conditions: ImagingConditions,
    settings: TrainingSettings,
    *,
    name: str,
    stacks: list[StackVolume] | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    init_from: str | Path | None = None,
    time_limit_s: float | None = None,
    anneal_by_time: bool = False,
    workers: int = 0,
    on_progress: Callable[[str, int, int, dict[str, float]], None] | None = None,
) -> TrainingSummary:
    """Train a Recurrent-MZ model and write ``output_dir/model.safetensors``.

    Parameters
    ----------
    output_dir
        Checkpoints (``checkpoint.pt``), the log (``log.jsonl``) and the weights.
    conditions
        The imaging conditions (simulated data are drawn within them).
    settings
        Steps, batch, crop, architecture, seed.
    stacks
        The user's own z-stacks; ``None`` simulates volumes on the fly.
    resume
        Continue from ``checkpoint.pt`` if present (same settings required).
    init_from
        Start from these weights (fine-tuning) instead of a random network;
        the architecture settings must match them.
    stop_after
        Stop (with a checkpoint) once this many steps are done, e.g. to fit a
        time budget; a later call with ``resume`` finishes the run.
    time_limit_s
        Likewise, stop with a checkpoint once training has run this long
        (simulating the volumes not counted).
    anneal_by_time
        Decay the learning rate over ``time_limit_s`` rather than over
        ``settings.steps``: for a run that the clock ends (calibration, a
        lease on a GPU).  The schedule then ends when the time is up, and
        the weights are written as at the last step.
    workers
        Processes that simulate the volumes and draw the batches while the
        network trains (0: all in this process).  The weights do not depend
        on it; on a GPU, drawing batches is the bottleneck without them.
        The volumes are simulated in spawned processes, which import the
        calling script: call `train` under ``if __name__ == "__main__":``.
    on_progress
        ``(phase, done, total, metrics)`` for a progress display.
    """
    if workers < 0:
        raise RmzError(f"workers must be 0 or more, not {workers}")
    ranks = Ranks.from_environment()
    if ranks.distributed and settings.adversarial_weight > 0:
        raise RmzError("the adversarial term is not available with several processes (torchrun)")
    if ranks.distributed and settings.n_volumes < ranks.world_size and stacks is None:
        raise RmzError(
            f"--volumes {settings.n_volumes} gives some of the {ranks.world_size} processes "
            "no volume; give at least one per process"
        )
    if time_limit_s is not None and not time_limit_s > 0:
        raise RmzError(f"the time limit must be positive, not {time_limit_s} s")
    if stacks is None and settings.crop_px > settings.fov_px:
        raise RmzError(
            f"--crop-px {settings.crop_px} is larger than the simulated field of view "
            f"(--fov-px {settings.fov_px}); give a crop no larger than the field"
        )
    if anneal_by_time and time_limit_s is None:
        raise RmzError("annealing by time needs a time limit (--time-limit-min)")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = distributed.start(ranks, resolve_device(device))
    try:
        return _train(
            out,
            conditions,
            settings,
            ranks,
            name=name,
            stacks=stacks,
            device=device,
            resume=resume,
            stop_after=stop_after,
            init_from=init_from,
            time_limit_s=time_limit_s,
            anneal_by_time=anneal_by_time,
            workers=workers,
            on_progress=on_progress,
        )
    finally:
        distributed.stop(ranks)


def _train(
    out: Path,
    conditions: ImagingConditions,
    settings: TrainingSettings,
    ranks: Ranks,
    *,
    name: str,
    stacks: list[StackVolume] | None,
    device: torch.device,
    resume: bool,
    stop_after: int | None,
    init_from: str | Path | None,
    time_limit_s: float | None,
    anneal_by_time: bool,
    workers: int,
    on_progress: Callable[[str, int, int, dict[str, float]], None] | None,
) -> TrainingSummary:
    torch.manual_seed(settings.seed)  # the same initial weights on every rank
    notify = on_progress or (lambda *args: None)

    volumes: list[SimulatedVolume] | list[StackVolume]
    validation_volumes: list[SimulatedVolume] | list[StackVolume]
    if stacks is None:
        seeds = [1000 * settings.seed + i for i in range(settings.n_volumes)]
        seeds = seeds[ranks.rank :: ranks.world_size]  # each rank simulates its own share
        volumes = _simulate(conditions, seeds, settings, workers, notify)
        validation_volumes = [
            _settings_volume(conditions, settings, VALIDATION_SEED + i) for i in range(2)
        ]
    else:
        if len(stacks) < 2:
            raise RmzError("training on your own data needs at least 2 z-stacks (one is held out)")
        volumes, validation_volumes = stacks[:-1], stacks[-1:]
        if ranks.distributed:  # each rank trains on its share of the user's stacks
            volumes = volumes[ranks.rank :: ranks.world_size] or volumes
        small = min(min(v.shape) for v in stacks)
        if small < settings.crop_px:
            raise RmzError(
                f"z-stacks of {small} px are smaller than the {settings.crop_px} px crop"
            )

    model = RecurrentMZ(
        base_channels=settings.base_channels,
        depth=settings.depth,
        dpm_scale_um=settings.dpm_scale_um,
        intensity=settings.intensity,
    ).to(device)
    earlier: list[dict[str, Any]] = []  # the stages the initial weights went through
    blend: LinearBlend | None = None  # the initial weights', trained through (--through-blend)
    if settings.through_blend is not None and init_from is None:
        raise RmzError(
            "--through-blend needs --init weights that carry a linear blend (e.g. --init "
            "nuclei): the network is trained to complement that blend's filter"
        )
    if init_from is not None:
        from ..model.weights import load_model, training_stages

        loaded = load_model(init_from)
        initial, earlier = loaded.model, training_stages(loaded.metadata)
        if settings.through_blend is not None:
            if loaded.linear_blend is None:
                raise RmzError(
                    f"--through-blend {settings.through_blend:g}: {init_from} carries no linear "
                    "blend; give weights that do (the nuclei and widefield presets, or "
                    "`rmz-acq calibrate` output), or leave --through-blend out"
                )
            blend = loaded.linear_blend.with_weight(settings.through_blend)
        # The intensity method is the data's, not the architecture's: weights
        # trained on one may be fine-tuned on the other.
        have, want = replace(initial.config, intensity=settings.intensity), model.config
        grows = have.depth <= want.depth and have.base_channels <= want.base_channels
        same_rest = have == replace(want, depth=have.depth, base_channels=have.base_channels)
        if have != want and grows and same_rest:
            # wider or deeper than the weights: keep them, add channels and scales
            if have.base_channels < want.base_channels:
                initial = grow_width(initial, want.base_channels)
            if have.depth < want.depth:
                initial = grow_depth(initial, want.depth)
            initial.config = want
            model = initial.to(device)
        elif have != want:
            raise RmzError(
                f"{init_from} is a {have} network; give matching --base-channels "
                "and --depth (larger ones than the weights' grow them, if "
                "everything else matches)"
            )
        else:
            model.load_state_dict(initial.state_dict())
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    net: torch.nn.Module = model
    if ranks.distributed:  # gradients averaged over the ranks at every step
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    adversary = (
        _Adversary(settings.adversarial_weight, settings.learning_rate, device)
        if settings.adversarial_weight > 0
        else None
    )
    start_step = 0
    checkpoint = out / "checkpoint.pt"
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if TrainingSettings.model_validate_json(state["settings"]) != settings:
            raise RmzError(
                f"{checkpoint} was written with other settings; use another output folder "
                "or --no-resume"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if adversary is not None:
            adversary.load(state)
        start_step = int(state["step"])

    pairs = settings.order_consistency > 0
    sampler = TrainingSampler(
        volumes,
        input_spacing_um=conditions.input_spacing_um,
        crop_px=settings.crop_px,
        # with order pairs each sequence fills two entries: as many entries, half the sequences
        items=max(1, settings.batch_items // 2) if pairs else settings.batch_items,
        targets_per_item=settings.targets_per_item,
        focus_fraction=settings.focus_fraction,
        max_inputs=settings.max_inputs,
        long_share=settings.long_share,
        scan_order_fraction=settings.scan_order_fraction,
        scan_policies=settings.scan_policies,
        shuffle_probability=settings.shuffle_fraction,
        intensity=settings.intensity,
        input_plane_fraction=settings.input_plane_fraction,
        between_fraction=settings.between_fraction,
        intensity_jitter=settings.intensity_jitter,
        stack_statistics_fraction=settings.stack_statistics_fraction,
        saturated_fraction=settings.saturated_fraction,
        order_pairs=pairs,
        blend=blend,
    )
    cases = _validation_set(validation_volumes, conditions.input_spacing_um, settings.intensity)
    # the knee the network's intensities were compressed with (`--loss-knee` recompresses)
    knee = ENERGY_COMPRESSION if settings.intensity == "energy" else 0.0
    log = (out / "log.jsonl").open("a") if ranks.main else None
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    model.train()
    batches = _batches(
        sampler,
        settings.seed,
        start_step,
        settings.steps,
        workers,
        rank=ranks.rank if ranks.distributed else None,
    )
    done = start_step
    for step, batch in zip(range(start_step, settings.steps), batches, strict=True):
        elapsed = None
        if anneal_by_time and time_limit_s is not None:
            elapsed = (time.perf_counter() - started) / time_limit_s
        lr = _learning_rate(settings, step, elapsed)
        for group in optimizer.param_groups:
            group["lr"] = lr
        frames = batch.frames.to(device).contiguous(memory_format=torch.channels_last)
        targets = batch.targets.to(device)
        with torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=settings.precision == "bfloat16"
        ):
            prediction = net(frames, batch.dpm_um.to(device))
        prediction = prediction.float()  # the loss (MS-SSIM) in float32 either way
        if batch.prior is not None and batch.share is not None:
            # what the blend will make of it: the filter's part carries no gradient
            share = batch.share.to(device)[:, None, None, None]
            prediction = share * prediction + (1 - share) * batch.prior.to(device)
        scored, scored_targets = prediction, targets
        if settings.loss_knee is not None and settings.loss_knee != knee:
            scored = rescale_knee(prediction, knee, settings.loss_knee)
            scored_targets = rescale_knee(targets, knee, settings.loss_knee)
        loss = reconstruction_loss(
            scored,
            scored_targets,
            beta=settings.ssim_weight,
            foreground_weight=settings.foreground_weight,
        )
        metrics = {}
        if settings.lowpass_weight > 0:
            lowpass = lowpass_error(scored, scored_targets)
            metrics["lowpass"] = float(lowpass.detach())
            loss = loss + settings.lowpass_weight * lowpass
        if pairs:
            gap = order_gap(prediction)
            metrics["order_gap"] = float(gap.detach())
            loss = loss + settings.order_consistency * gap
        if adversary is not None:
            adversarial = adversary.generator_term(prediction)
            metrics["adversarial"] = float(adversarial.detach())
            loss = loss + adversarial
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        metrics["loss"] = float(loss.detach())
        if adversary is not None:
            metrics["discriminator"] = adversary.update(prediction, targets, lr)
        done = step + 1
        out_of_time = time_limit_s is not None and time.perf_counter() - started >= time_limit_s
        if time_limit_s is not None:  # every rank stops at the same step
            out_of_time = distributed.any_rank(out_of_time, ranks)
        # a run annealed by the clock is at its schedule's end when the time is up
        finished = done == settings.steps or (anneal_by_time and out_of_time)
        stopping = not finished and ((stop_after is not None and done >= stop_after) or out_of_time)
        if ranks.main and (done % settings.validate_every == 0 or finished):
            metrics |= _validate(model, cases, device)
        if log is not None and (done % 10 == 0 or "psnr" in metrics):
            record = {
                "step": done,
                "time_s": round(time.perf_counter() - started, 1),
                "world_size": ranks.world_size,
                **metrics,
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
        checkpointing = done % settings.checkpoint_every == 0 or finished
        if ranks.main and (checkpointing or stopping):
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": done,
                    "settings": settings.model_dump_json(),
                    **(adversary.state() if adversary is not None else {}),
                },
                checkpoint,
            )
        notify("training", done, settings.steps, metrics)
        if finished:
            break
        if stopping:
            if log is not None:
                log.close()
            distributed.barrier(ranks)  # the checkpoint is written before anyone leaves
            return TrainingSummary(None, done, time.perf_counter() - started, metrics)
    if log is not None:
        log.close()
    if not ranks.main:
        distributed.barrier(ranks)
        return TrainingSummary(out / "model.safetensors", done, 0.0, metrics)
    weights = save_weights(
        model.cpu(),
        out / "model.safetensors",
        name=name,
        conditions=conditions.model_dump(),
        extra={"training": settings.model_dump_json()}
        | ({"earlier_training": json.dumps(earlier)} if earlier else {}),
        linear_blend=blend,  # trained to complement it: shipped with it
    )
    distributed.barrier(ranks)
    return TrainingSummary(weights, done, time.perf_counter() - started, metrics)
