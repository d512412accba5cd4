"""Fine-tune a model on the user's own z-stacks, judged on a region it never saw.

Each stack is split laterally: the left part (three quarters) is for
training, the right strip is held out.  The model is scored on the held-out
strips before and after fine-tuning, with a fixed sparse scan (the
candidates at the model's input spacing, bisection order) against the full
stack, beside linear interpolation of the same planes.  Weights that score
worse than the model they started from are not written (unless forced).

With two or more stacks, a linear filter calibrated on the same training
parts (`rmz_acq.linear_blend`) is then blended with the network's output:
the network's share is chosen by cross-fitting stack against stack (the
filter fitted on the other stacks' training parts, scored on each one's), so
neither the share nor the filter ever sees the held-out strips, and the
share is the one that carried to another field.  ``minutes=0`` calibrates
the blend alone, in a few minutes, without fine-tuning.  Weights that carry
a blend already (the `widefield` and `nuclei` presets', fitted on their training mixture)
keep it unless one fitted on the stacks is chosen in its place.

Fine-tuning changes how much the volume moves per frame, so the stop rule's
threshold is chosen again for the weights written (`choose_stop_threshold`,
on the training parts) and stored in them: scans and ``validate`` with the
calibrated weights use it, and the preset's plane spacing and next-plane
policy, by default.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from .acquisition.plan import SCAN_DEFAULTS_KEY, ScanPlan, scan_defaults
from .acquisition.settings import ScanSettings
from .acquisition.stop_rules import replayed_stop
from .errors import DataWarning, RmzError
from .evaluation.metrics import psnr
from .evaluation.noise import noise_free_means
from .evaluation.report import evaluate_arrays, truth_normalisation
from .io import ZStack
from .linear_blend import LinearBlend, LinearFilter
from .model.network import RecurrentMZ
from .model.weights import LoadedModel, load_model, save_weights
from .session import ReconstructionSession
from .training.conditions import ImagingConditions
from .training.data import StackVolume
from .validation import check_stack, stack_noise_ceiling, stack_saturation_note, validate_stack

__all__ = [
    "BLEND_SHARES",
    "FINE_TUNE_LEARNING_RATE",
    "HELD_OUT_FRACTION",
    "MIN_BLEND_STACKS",
    "STOP_TOLERANCE_DB",
    "BlendChoice",
    "Calibration",
    "HeldOutScore",
    "StopChoice",
    "calibrate",
    "choose_linear_blend",
    "choose_stop_threshold",
    "score_held_out",
    "split_stack",
]

HELD_OUT_FRACTION = 0.25  # the right strip of every stack, never trained on
FINE_TUNE_LEARNING_RATE = 2e-4  # a fifth of training from scratch: adapt, do not forget
# A scan's stop is good enough when its volume scores within this of the volume
# from every candidate (the criterion the presets' thresholds were chosen by).
STOP_TOLERANCE_DB = 0.5
# the network's shares of the linear blend tried (1: the network alone)
BLEND_SHARES = (1.0, 0.75, 0.5, 0.25, 0.0)
# A filter fitted on one field did not carry to another of the same family
# (benchmarks/bench_linear_blend.py: -0.7 to +0.2 dB with one stack, +0.2 to
# +0.3 with two), and one stack cannot check that it does.
MIN_BLEND_STACKS = 2
_ONE_STACK = (
    "the linear blend needs two or more stacks of different fields of your specimen (one "
    "field's filter need not carry to another, and one stack cannot check it)"
)
# thresholds tried, as shares of the starting model's (never above it)
_THRESHOLD_LADDER = (1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.125)


@dataclass(frozen=True)
class HeldOutScore:
    """Mean PSNR (dB) over the held-out strips' non-input planes.

    ``noise_ceiling``: what the noise-free specimen itself would score
    against the strips (their own noise; `rmz_acq.evaluation.noise`), and
    ``recurrent_mz_noise_free``: Recurrent-MZ against the specimen,
    estimated; both ``None`` where the stacks' planes are too far apart.
    """

    recurrent_mz: float
    linear_interpolation: float
    noise_ceiling: float | None = None
    recurrent_mz_noise_free: float | None = None

    @property
    def margin(self) -> float:
        return self.recurrent_mz - self.linear_interpolation


@dataclass(frozen=True)
class StopChoice:
    """The relative epsilon chosen for calibrated weights, and why.

    Per training part, at the chosen threshold: the frames the replayed scan
    took (of ``candidates``), and how far its volume scored below the volume
    from every candidate (dB; negative: above it).
    """

    relative_epsilon: float
    inherited: float  # the starting model's threshold
    frames: list[int]
    candidates: list[int]
    shortfall_db: list[float]
    met: bool  # every part within tolerance_db at the chosen threshold
    tolerance_db: float = STOP_TOLERANCE_DB

    def describe(self) -> str:
        taken = ", ".join(f"{f} of {c}" for f, c in zip(self.frames, self.candidates, strict=True))
        short = max(self.shortfall_db)
        how = (
            f"kept the model's {self.inherited:g}"
            if self.relative_epsilon == self.inherited
            else f"lowered from {self.inherited:g}"
        )
        verdict = (
            f"within {self.tolerance_db:g} dB of taking every candidate (at most {short:.2f} dB "
            "below it)"
            if self.met
            else f"still {short:.2f} dB below taking every candidate at the lowest threshold tried"
        )
        text = (
            f"stop rule: relative change <= {self.relative_epsilon:g} ({how}); on the training "
            f"parts the replayed scan stops after {taken} planes, {verdict}"
        )
        if sum(self.frames) >= 0.8 * sum(self.candidates):
            text += (
                "; on this specimen a scan that good needs nearly every candidate, so sparse "
                "scans save few frames (a larger --stop-tolerance here, or --relative-epsilon "
                "when you scan, trades fidelity for frames)"
            )
        return text


@dataclass(frozen=True)
class BlendChoice:
    """The network's share of the linear blend, chosen by cross-fitting on the training parts.

    ``psnr_db``: per share tried, the mean PSNR (dB, the stacks' scale) at
    the planes that were not inputs of the sparse scan, each scored with a
    filter fitted elsewhere (`choose_linear_blend`).
    """

    weight: float
    psnr_db: dict[float, float]

    def describe(self) -> str:
        alone = self.psnr_db[1.0]
        how = "each stack's training part scored with the filter fitted on the other stacks"
        if self.weight == 1.0:
            return (
                "linear blend: none (no share of the calibrated filter beat the network alone, "
                f"{alone:.2f} dB; {how})"
            )
        return (
            f"linear blend: {self.weight:g} network + {1 - self.weight:g} a linear filter "
            f"calibrated on your stacks, {alone:.2f} -> {self.psnr_db[self.weight]:.2f} dB "
            f"({self.psnr_db[self.weight] - alone:+.2f} dB; {how})"
        )


def _scan_order(model: LoadedModel, planes: NDArray[np.float64]) -> list[int]:
    """The planes of a stack a default sparse scan pushes, in its order, each once."""
    plan = ScanPlan.for_model(
        model,
        output_planes_um=planes,
        candidate_step_um=float(model.conditions.get("input_spacing_um", 0) or 0) or None,
    )
    return list(dict.fromkeys(int(np.argmin(np.abs(planes - z))) for z in plan.candidates_um))


def choose_linear_blend(
    model: LoadedModel, parts: list[StackVolume], *, device: str | None = None
) -> BlendChoice:
    """The share of ``model``'s network in a blend with a filter fitted on ``parts``.

    Each part is reconstructed once by the network alone, from the planes
    a default sparse scan takes, and each share in `BLEND_SHARES` is scored
    on each part in turn with the filter fitted on the other parts: how
    well it carries to another field.  Chosen: the share with the best mean
    (ties to the network).

    Raises
    ------
    RmzError
        Fewer than `MIN_BLEND_STACKS` parts, or parts whose z ranges do not
        overlap.
    """
    if len(parts) < MIN_BLEND_STACKS:
        raise RmzError(_ONE_STACK)
    network = dataclasses.replace(model, linear_blend=None)
    scans = []
    for part in parts:
        order = _scan_order(model, part.z_um)
        session = ReconstructionSession(network, part.z_um, device=device)
        result = session.run([part.data[i] for i in order], [float(part.z_um[i]) for i in order])
        scans.append((order, result.volume.copy()))
    folds = []  # (the filter fitted on the other stacks, the stack it is scored on)
    for i in range(len(parts)):
        others = [(p.data, p.z_um) for j, p in enumerate(parts) if j != i]
        folds.append((LinearBlend.fit(others), i))
    scores: dict[float, list[float]] = {share: [] for share in BLEND_SHARES}
    for blend, i in folds:
        part, (order, volume) = parts[i], scans[i]
        linear = LinearFilter(blend, 0.5 * float(part.z_um[0] + part.z_um[-1]))
        for k in order:
            linear.add(part.data[k], float(part.z_um[k]))
        between = linear.covers(part.z_um)
        if not between.any():
            continue  # no plane of this part inside the others' range
        estimate = linear.planes(part.z_um)[between]
        network_part, truth = volume[between], part.data[between]
        norm = truth_normalisation(truth)
        reference = norm.apply(truth)
        for share in BLEND_SHARES:
            mixed = norm.apply(share * network_part + (1 - share) * estimate)
            pairs = zip(mixed, reference, strict=True)
            scores[share].append(float(np.mean([psnr(a, b) for a, b in pairs])))
    if not scores[1.0]:
        raise RmzError(
            "the stacks' z ranges do not overlap enough to cross-check a linear blend; give "
            "stacks over the same range around the specimen"
        )
    means = {share: float(np.mean(values)) for share, values in scores.items()}
    best = max(BLEND_SHARES, key=lambda share: (round(means[share], 6), share))
    return BlendChoice(best, means)


def choose_stop_threshold(
    model: LoadedModel,
    parts: list[StackVolume],
    *,
    pixel_size_um: float | None = None,
    tolerance_db: float = STOP_TOLERANCE_DB,
    device: str | None = None,
) -> StopChoice:
    """The largest relative epsilon, at most ``model``'s own, whose stop is good enough.

    The default scan is replayed on each part (`validate_stack`, every
    candidate pushed, the change measured on the full grid); for each
    threshold on a ladder below the model's own, the scan stops at the first
    frame (from the second) whose relative change is at most the threshold.
    Chosen: the first threshold at which, on every part, the volume at the
    stop scores within ``tolerance_db`` (default `STOP_TOLERANCE_DB`) of the
    volume from every candidate; failing that, the lowest tried.  A larger
    tolerance keeps scans sparser; 0 asks for every candidate's score.
    Never raised above the model's own: calibration is for fidelity, not
    for fewer frames.
    """
    check_tolerance(tolerance_db)
    inherited = scan_defaults(model).relative_epsilon
    settings = ScanSettings.for_model(model).model_copy(update={"decision_planes": None})
    replays = [
        validate_stack(
            ZStack(data=part.data, z_um=part.z_um, pixel_size_um=pixel_size_um),
            model,
            source="a training part",
            settings=settings,
            device=device,
        )
        for part in parts
    ]
    ladder = [round(inherited * share, 6) for share in _THRESHOLD_LADDER]

    def stops(threshold: float) -> tuple[list[int], list[float]]:
        frames, short = [], []
        for replay in replays:
            scores = replay.recurrent_mz_psnr_at_m
            stop = replayed_stop(
                replay.relative_changes,
                replay.planes_taken_um,
                (min(replay.candidates_um), max(replay.candidates_um)),
                threshold,
                min_frames=settings.min_frames,
                stop_at=settings.stop_at,
            )
            frames.append(stop)
            short.append(float(scores[-1] - scores[stop - 1]))
        return frames, short

    for threshold in ladder:
        frames, short = stops(threshold)
        if max(short) <= tolerance_db:
            break
    return StopChoice(
        relative_epsilon=threshold,
        inherited=inherited,
        frames=frames,
        candidates=[len(r.relative_changes) for r in replays],
        shortfall_db=short,
        met=max(short) <= tolerance_db,
        tolerance_db=tolerance_db,
    )


def check_tolerance(tolerance_db: float) -> None:
    """Refuse a stop tolerance that is negative or not a number."""
    if not tolerance_db >= 0:
        raise RmzError(
            f"--stop-tolerance must be 0 dB or more, got {tolerance_db:g}; it is how far below "
            f"taking every candidate a scan's stop may score (default {STOP_TOLERANCE_DB:g})"
        )


@dataclass
class Calibration:
    """What fine-tuning did: the scores before and after, and where the weights went."""

    before: HeldOutScore
    after: HeldOutScore
    steps: int
    seconds: float
    written: Path | None
    card: Path | None
    stop: StopChoice | None = None  # chosen only for weights that are written
    blend: BlendChoice | None = None  # None: no linear blend was tried
    unchanged: bool = False  # no fine-tuning and no blend chosen: nothing to write
    blend_skipped: str | None = None  # why no linear blend was tried
    blend_kept: str | None = None  # the weights' own blend, kept (none of the stacks chosen)

    @property
    def improved(self) -> bool:
        return not self.unchanged and self.after.recurrent_mz >= self.before.recurrent_mz

    def table(self) -> str:
        """Before and after, as printed by ``rmz-acq calibrate``."""
        rows = [f"{'held-out region':<16}{'Recurrent-MZ':>14}{'linear interp.':>16}{'margin':>9}"]
        for label, score in (("before", self.before), ("after", self.after)):
            rows.append(
                f"{label:<16}{score.recurrent_mz:>11.2f} dB{score.linear_interpolation:>13.2f} dB"
                f"{score.margin:>+6.2f} dB"
            )
        before, after = self.before, self.after
        if before.noise_ceiling is not None and after.recurrent_mz_noise_free is not None:
            rows.append(
                f"the strips' own noise caps any score at {before.noise_ceiling:.2f} dB; against "
                f"the noise-free specimen (estimated) Recurrent-MZ went "
                f"{before.recurrent_mz_noise_free:.2f} -> {after.recurrent_mz_noise_free:.2f} dB"
            )
        if self.blend is not None:
            rows.append(self.blend.describe())
        if self.blend_skipped is not None:
            rows.append(self.blend_skipped)
        if self.blend_kept is not None:
            rows.append(f"linear blend: the weights' own kept, a {self.blend_kept}")
        if self.stop is not None:
            rows.append(self.stop.describe())
        return "\n".join(rows)


def split_stack(stack: ZStack, source: str) -> tuple[StackVolume, StackVolume]:
    """(training part, held-out strip) of one stack, planes sorted by z."""
    z = check_stack(stack, source)
    saturated = stack_saturation_note(stack, source)
    if saturated is not None:
        warnings.warn(saturated, DataWarning, stacklevel=2)
    order = np.argsort(z)
    data = np.asarray(stack.data, np.float32)[order]
    width = data.shape[2]
    cut = round(width * (1 - HELD_OUT_FRACTION))
    if width - cut < 16 or cut < 32:
        raise RmzError(
            f"{source} is {width} px wide; calibration needs at least 48 px (a 32 px training "
            "part and a 16 px held-out strip)"
        )
    return StackVolume(data[:, :, :cut], z[order]), StackVolume(data[:, :, cut:], z[order])


def score_held_out(
    model: LoadedModel, strips: list[StackVolume], *, device: str | None = None
) -> HeldOutScore:
    """Recurrent-MZ and linear interpolation on the strips, from the same sparse planes."""
    ours, linear, ceilings, clean = [], [], [], []
    for strip in strips:
        planes = strip.z_um
        ordered = _scan_order(model, planes)
        chosen = sorted(ordered)
        session = ReconstructionSession(model, planes, device=device)
        result = session.run([strip.data[i] for i in ordered], [float(planes[i]) for i in ordered])
        evaluation = evaluate_arrays(
            result.volume,
            planes,
            strip.data,
            planes,
            strip.data[chosen],
            planes[chosen],
            pixel_um=float(model.conditions.get("pixel_size_um", 0.1)),
        )
        means = evaluation.means()
        ours.append(means["recurrent_mz"]["psnr"])
        linear.append(means["linear_interpolation"]["psnr"])
        ceiling, _ = stack_noise_ceiling(strip.data, planes, evaluation, model)
        if ceiling is not None:
            keep = [not i for i in evaluation.input_planes]
            ceilings.append(float(np.mean([c for c, k in zip(ceiling, keep, strict=True) if k])))
            per_plane = {"recurrent_mz": evaluation.scores["recurrent_mz"]["psnr"]}
            clean.append(noise_free_means(per_plane, ceiling, keep)["recurrent_mz"])
    known = len(ceilings) == len(strips)
    return HeldOutScore(
        float(np.mean(ours)),
        float(np.mean(linear)),
        float(np.mean(ceilings)) if known else None,
        float(np.mean(clean)) if known else None,
    )


def _settings_for(model: LoadedModel, crop_px: int, learning_rate: float) -> Any:
    from .training.trainer import TrainingSettings

    stored = model.metadata.get("training")
    base = (
        TrainingSettings.model_validate_json(stored)
        if stored
        else TrainingSettings(
            base_channels=model.model.config.base_channels,
            depth=model.model.config.depth,
            dpm_scale_um=model.model.config.dpm_scale_um,
            intensity=model.model.config.intensity,
        )
    )
    return base.model_copy(
        update={
            "steps": 1_000_000,  # the time limit ends it
            "learning_rate": learning_rate,
            "crop_px": crop_px,
            "checkpoint_every": 1_000_000,
            "validate_every": 1_000_000,
            "adversarial_weight": 0.0,
            # A recorded stack is noisy, and its planes are both inputs and
            # targets.  BerHu alone on noisy targets learns their mean (noise
            # to noise); MS-SSIM against them rewards inflated contrast; and
            # a target at an input's z is that very frame, noise and all.
            "ssim_weight": 0.0,
            "input_plane_fraction": 0.0,
        }
    )


def calibrate(
    stacks: list[tuple[str, ZStack]],
    model: LoadedModel,
    output: str | Path,
    *,
    minutes: float,
    force: bool = False,
    learning_rate: float = FINE_TUNE_LEARNING_RATE,
    stop_tolerance_db: float = STOP_TOLERANCE_DB,
    linear_blend: bool = True,
    device: str | None = None,
    on_progress: Any = None,
) -> Calibration:
    """Fine-tune ``model`` on the training parts of ``stacks`` for ``minutes``, then blend.

    ``minutes=0`` skips fine-tuning; ``linear_blend=False`` skips the blend
    (`choose_linear_blend`).

    Raises
    ------
    RmzError
        A stack unfit for calibration (no z, too few planes, too narrow), a
        model that states no imaging conditions, a negative budget, nothing
        to do (no minutes and no blend) or a negative stop tolerance.
    """
    if not minutes >= 0:
        raise RmzError(f"--minutes must be 0 or more, got {minutes:g}")
    if minutes == 0 and not linear_blend:
        raise RmzError(
            "nothing to calibrate: --minutes 0 and no linear blend; give --minutes to fine-tune"
        )
    check_tolerance(stop_tolerance_db)
    if not stacks:
        raise RmzError("give at least one --stack")
    if minutes == 0 and len(stacks) < MIN_BLEND_STACKS:
        raise RmzError(f"{_ONE_STACK}: give another --stack, or --minutes to fine-tune")
    blend_skipped = None
    if linear_blend and len(stacks) < MIN_BLEND_STACKS:
        blend_skipped = f"linear blend: not fitted: {_ONE_STACK}"
        linear_blend = False
    try:
        conditions = ImagingConditions(**model.conditions)
    except (TypeError, ValueError):
        raise RmzError(
            f"model {model.name!r} does not state the imaging conditions it was trained for; "
            "calibrate a preset or weights written by `rmz-acq train`"
        ) from None
    parts = [split_stack(stack, source) for source, stack in stacks]
    training = [train for train, _ in parts]
    strips = [strip for _, strip in parts]
    multiple = 2**model.model.config.depth
    side = min(min(t.shape) for t in training)
    crop = max(32, min(128, side // multiple * multiple))
    if side < crop:
        raise RmzError(f"the training parts of the stacks are {side} px; at least 32 are needed")
    before = score_held_out(model, strips, device=device)
    settings = _settings_for(model, crop, learning_rate)
    started = time.perf_counter()
    steps = 0
    tuned = model.model
    extra = {"calibrated_from": json.dumps({"name": model.name, "sha256": model.sha256})}
    if minutes > 0:
        tuned, steps = _fine_tune(
            model, conditions, settings, training, minutes, device, on_progress
        )
        extra["training"] = settings.model_dump_json()
    elif model.metadata.get("training"):
        extra["training"] = model.metadata["training"]
    output = Path(output)
    with tempfile.TemporaryDirectory() as tmp:
        candidate = save_weights(
            tuned,
            Path(tmp) / "calibrated.safetensors",
            name=f"{model.name}-calibrated",
            conditions=model.conditions,
            extra=extra,
        )
        loaded = load_model(candidate, device or "cpu")
    choice = blend = None
    if linear_blend:
        choice = choose_linear_blend(loaded, training, device=device)
        if choice.weight < 1.0:
            blend = LinearBlend.fit([(t.data, t.z_um) for t in training], choice.weight)
    if minutes == 0 and blend is None:
        after = before  # nothing changed: the same model
        seconds = time.perf_counter() - started
        return Calibration(before, after, 0, seconds, None, None, blend=choice, unchanged=True)
    # no blend of your stacks chosen: the weights' own, if they carry one, stays
    blend = blend or model.linear_blend
    loaded = dataclasses.replace(loaded, linear_blend=blend)
    after = score_held_out(loaded, strips, device=device)
    result = Calibration(
        before, after, steps, time.perf_counter() - started, None, None, blend=choice
    )
    result.blend_skipped = blend_skipped
    if blend is not None and blend is model.linear_blend:
        result.blend_kept = blend.describe()
    if not (result.improved or force):
        return result
    # the preset's spacing and policy, and a threshold chosen for these weights
    pixel = next((s.pixel_size_um for _, s in stacks if s.pixel_size_um), None)
    result.stop = choose_stop_threshold(
        loaded, training, pixel_size_um=pixel, tolerance_db=stop_tolerance_db, device=device
    )
    inherited = scan_defaults(model)
    chosen = inherited._replace(relative_epsilon=result.stop.relative_epsilon)
    extra[SCAN_DEFAULTS_KEY] = json.dumps(chosen._asdict())
    result.written = save_weights(
        tuned,
        output,
        name=f"{model.name}-calibrated",
        conditions=model.conditions,
        extra=extra,
        linear_blend=blend,
    )
    result.card = _write_card(result, model, stacks, minutes, output)
    return result


def _fine_tune(
    model: LoadedModel,
    conditions: ImagingConditions,
    settings: Any,
    training: list[StackVolume],
    minutes: float,
    device: str | None,
    on_progress: Any,
) -> tuple[RecurrentMZ, int]:
    """The network after ``minutes`` of training on ``training``, and its steps."""
    from .training.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        summary = train(
            tmp,
            conditions,
            settings,
            name=f"{model.name}-calibrated",
            # the trainer wants a stack of its own to check on; the held-out strips
            # are scored here instead, so it gets one of the training parts
            stacks=[*training, training[0]],
            device=device,
            resume=False,
            init_from=model.path,
            time_limit_s=minutes * 60,
            anneal_by_time=True,  # end the budget at a low rate, not in mid-schedule
            on_progress=on_progress,
        )
        state = torch.load(Path(tmp) / "checkpoint.pt", map_location="cpu", weights_only=True)
    tuned = RecurrentMZ.from_config(model.model.config)
    tuned.load_state_dict(state["model"])
    return tuned, summary.steps


def _write_card(
    result: Calibration,
    model: LoadedModel,
    stacks: list[tuple[str, ZStack]],
    minutes: float,
    output: Path,
) -> Path:
    card = output.with_suffix(".md")
    lines = [
        f"# {model.name}-calibrated",
        "",
        (
            f"Fine-tuned from `{model.name}` (SHA-256 `{model.sha256[:12]}`) with `rmz-acq "
            f"calibrate` for {minutes:g} minutes ({result.steps} steps, "
            f"{result.seconds:.0f} s in all) on "
            f"{torch.device('cuda' if torch.cuda.is_available() else 'cpu')}."
            if minutes > 0
            else f"The network of `{model.name}` (SHA-256 `{model.sha256[:12]}`), unchanged "
            "(`rmz-acq calibrate --minutes 0`), with a linear blend calibrated on your stacks."
        ),
        "",
        *([result.blend.describe().capitalize() + ".", ""] if result.blend is not None else []),
        *(
            [f"Linear blend: the weights' own kept, a {result.blend_kept}.", ""]
            if result.blend_kept is not None
            else []
        ),
        "Training data (for the fine-tuning and the linear filter): the left three quarters "
        "of each of these z-stacks; the right quarter of each was held out and never trained "
        "on:",
        "",
        *[
            f"- `{source}`: {s.data.shape[0]} planes of {s.data.shape[1]} x {s.data.shape[2]} px"
            for source, s in stacks
        ],
        "",
        "Scored on the held-out strips (a sparse scan at the model's input spacing, mean PSNR "
        "over the planes that were not inputs, against the full stack):",
        "",
        "| | Recurrent-MZ | linear interpolation | margin |",
        "|---|---|---|---|",
        *[
            f"| {label} | {score.recurrent_mz:.2f} dB | {score.linear_interpolation:.2f} dB "
            f"| {score.margin:+.2f} dB |"
            for label, score in (("before", result.before), ("after", result.after))
        ],
        "",
        *(
            [
                f"The strips' own noise caps any score at {result.before.noise_ceiling:.2f} dB "
                "(what the noise-free specimen itself would score against them); against the "
                "specimen, estimated, Recurrent-MZ went from "
                f"{result.before.recurrent_mz_noise_free:.2f} to "
                f"{result.after.recurrent_mz_noise_free:.2f} dB.",
                "",
            ]
            if result.before.noise_ceiling is not None
            and result.before.recurrent_mz_noise_free is not None
            and result.after.recurrent_mz_noise_free is not None
            else []
        ),
        *([result.stop.describe().capitalize() + ".", ""] if result.stop is not None else []),
        "Valid for the specimen and microscope these stacks came from; check others with "
        "`rmz-acq validate`.",
        "",
    ]
    card.write_text("\n".join(lines))
    return card
