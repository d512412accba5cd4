"""Will it work on this specimen?  One full z-stack answers it.

A mechanical z-stack of the user's own specimen is the ground truth that a
sparse scan tries to reproduce.  `validate_stack` replays the adaptive scan
offline from the stack's own planes (the candidates a live scan would take,
in its order, judged by the same rule: `ScanJudge`), and scores the volume at
the replay's stop, and at every M, against the whole stack, beside linear
interpolation, the nearest plane and single-input propagation of the same
planes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .acquisition.judge import ScanJudge
from .acquisition.plan import ScanPlan
from .acquisition.policies import ScanState, choosable_planes, make_policy
from .acquisition.settings import ScanSettings, sorts_by_z
from .acquisition.stop_rules import StopReason
from .errors import RmzError
from .evaluation.noise import (
    depth_of_field_um,
    noise_ceiling_db,
    noise_free_means,
    noise_is_estimable,
)
from .evaluation.report import Evaluation, evaluate_arrays
from .io import ZStack, write_zstack
from .io.jsonfile import write_json_file
from .io.run_folder import REPORT, VOLUME
from .model.weights import LoadedModel
from .reconstruct import stack_normalization
from .saturation import camera_ceiling, find_saturation, saturated_planes_note
from .session import ReconstructionSession, compute_dtype

__all__ = [
    "MIN_PLANES",
    "Validation",
    "check_stack",
    "stack_noise_ceiling",
    "stack_saturation_note",
    "validate_stack",
    "write_validation",
]

MIN_PLANES = 5  # fewer cannot hold two inputs and planes between them to score
MIN_SIDE_PX = 16


@dataclass
class Validation:
    """A replayed scan on one stack, scored against the stack."""

    model_name: str
    model_sha256: str
    planes_um: NDArray[np.float64]
    candidates_um: list[float]  # the plan's, in its order (planes of the stack)
    frames_used: int
    stop_reason: StopReason
    relative_changes: list[float | None]  # as the rule saw them, one per candidate
    recurrent_mz_psnr_at_m: list[float]  # mean over planes that are not inputs, per M
    evaluation: Evaluation  # at the stop, with the baselines
    volume: NDArray[np.float32]
    truth: NDArray[np.float32]  # the stack, planes sorted by z
    pixel_size_um: float
    notes: list[str] = field(default_factory=list)
    planes_taken_um: list[float] = field(default_factory=list)  # every plane pushed, in order
    next_plane: str = "bisection"  # the policy that chose them
    # per plane of the evaluation, the noise-free specimen's PSNR against the
    # stack (`rmz_acq.evaluation.noise`); None where the z step is too coarse
    noise_ceiling_per_plane_db: list[float] | None = None
    # the rule the replay stopped by: the relative threshold, or the paper's absolute one
    relative_epsilon: float | None = None
    epsilon: float | None = None

    def psnr_db(self) -> dict[str, float]:
        """Means over the non-input planes, per method (the report's contract)."""
        return {name: scores["psnr"] for name, scores in self.evaluation.means().items()}

    def _non_input(self) -> list[bool]:
        return [not i for i in self.evaluation.input_planes]

    def noise_ceiling_db(self) -> float | None:
        """What a perfect volume would score against this stack (mean, non-input planes)."""
        if self.noise_ceiling_per_plane_db is None:
            return None
        keep = self._non_input()
        values = [c for c, k in zip(self.noise_ceiling_per_plane_db, keep, strict=True) if k]
        return float(np.mean(values)) if values else None

    def noise_free_psnr_db(self) -> dict[str, float]:
        """`psnr_db` against the noise-free specimen, estimated ({} without a ceiling)."""
        if self.noise_ceiling_per_plane_db is None:
            return {}
        per_plane = {name: scores["psnr"] for name, scores in self.evaluation.scores.items()}
        return noise_free_means(per_plane, self.noise_ceiling_per_plane_db, self._non_input())

    def verdict(self) -> str:
        """One line a microscopist can act on."""
        scores = self.psnr_db()
        parts = [
            f"on this specimen, model {self.model_name} reaches {scores['recurrent_mz']:.1f} dB "
            f"with {self.frames_used} of {len(self.candidates_um)} planes"
        ]
        names = {
            "linear_interpolation": "linear interpolation of the same planes",
            "nearest_plane": "nearest plane",
            "single_input": "single-input propagation",
        }
        parts += [f"{label} {scores[key]:.1f} dB" for key, label in names.items() if key in scores]
        ceiling = self.noise_ceiling_db()
        if ceiling is not None:
            clean = self.noise_free_psnr_db()
            parts.append(
                f"the stack's own noise caps any score at {ceiling:.1f} dB (against the "
                f"noise-free specimen, estimated: Recurrent-MZ {clean['recurrent_mz']:.1f} dB, "
                f"linear interpolation {clean['linear_interpolation']:.1f} dB)"
            )
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": {"name": self.model_name, "sha256": self.model_sha256},
            "frames_used": self.frames_used,
            "candidates": len(self.candidates_um),
            "candidates_um": self.candidates_um,
            "next_plane": self.next_plane,
            "planes_taken_um": self.planes_taken_um,
            "stop_reason": self.stop_reason.value,
            "relative_epsilon": self.relative_epsilon,
            "epsilon": self.epsilon,
            "psnr_db": self.psnr_db(),
            "noise_ceiling_db": self.noise_ceiling_db(),
            "psnr_db_noise_free": self.noise_free_psnr_db(),
            "noise_ceiling_per_plane_db": self.noise_ceiling_per_plane_db,
            "verdict": self.verdict(),
            "relative_changes": self.relative_changes,
            "recurrent_mz_psnr_db_at_m": self.recurrent_mz_psnr_at_m,
            "pixel_size_um": self.pixel_size_um,
            "notes": self.notes,
            "evaluation": self.evaluation.to_json(),
        }


def check_stack(stack: ZStack, source: str) -> NDArray[np.float64]:
    """The stack's plane z values, sorted; refuse a stack that cannot validate anything.

    Raises
    ------
    RmzError
        No z per plane, too few planes, repeated z, or frames too small.
    """
    if stack.z_um is None:
        raise RmzError(
            f"{source} carries no z per plane (OME Plane PositionZ); acquire it with "
            "`rmz-acq validate --config` or `rmz-acq simulate`, or save it from Micro-Manager "
            "as OME-TIFF"
        )
    if stack.data.shape[0] < MIN_PLANES:
        raise RmzError(
            f"{source} holds {stack.data.shape[0]} plane(s); validation needs a full z-stack "
            f"(at least {MIN_PLANES} planes, ideally the model's whole output range)"
        )
    if min(stack.data.shape[1:]) < MIN_SIDE_PX:
        raise RmzError(
            f"{source} has frames of {stack.data.shape[1]} x {stack.data.shape[2]} px; "
            f"at least {MIN_SIDE_PX} x {MIN_SIDE_PX} are needed"
        )
    z = np.asarray(stack.z_um, np.float64)
    if len(np.unique(np.round(z, 6))) != len(z):
        raise RmzError(f"{source} repeats a z position; a z-stack has one plane per z")
    return z


def stack_saturation_note(stack: ZStack, source: str) -> str | None:
    """A line naming the stack's saturated planes (`rmz_acq.saturation`), or None.

    A saturated plane is a poor ground truth and a poor input alike.
    """
    ceiling = camera_ceiling(None, stack.data.dtype)
    found = [find_saturation(plane, ceiling) for plane in stack.data]
    return saturated_planes_note(found, np.asarray(stack.z_um, np.float64), source)


def _snap(candidates: tuple[float, ...], planes: NDArray[np.float64]) -> list[float]:
    """Each candidate replaced by the stack plane nearest to it (each plane once)."""
    snapped: list[float] = []
    for z in candidates:
        nearest = float(planes[int(np.argmin(np.abs(planes - z)))])
        if nearest not in snapped:
            snapped.append(nearest)
    return snapped


def validate_stack(
    stack: ZStack,
    model: LoadedModel,
    *,
    source: str = "the stack",
    settings: ScanSettings | None = None,
    candidate_step_um: float | None = None,
    device: str | None = None,
    precision: str = "float32",
) -> Validation:
    """Replay the default adaptive scan on ``stack`` and score it against the stack.

    The output grid is the stack's planes; the candidates are those of
    `ScanPlan.for_model` over that grid, each moved to the nearest plane of
    the stack, taken in the order of ``settings.next_plane`` (which may also
    choose any stack plane between the candidates); the rule is ``settings``
    (default: `ScanSettings.for_model`).  Every candidate is pushed, so the score at
    every M is known, but the volume reported is the one at the rule's stop.
    """
    planes_raw = check_stack(stack, source)
    order = np.argsort(planes_raw)
    planes = planes_raw[order]
    truth = np.asarray(stack.data, np.float32)[order]
    pixel = stack.pixel_size_um or float(model.conditions.get("pixel_size_um", 0.1))
    notes = []
    saturated = stack_saturation_note(stack, source)
    if saturated is not None:
        notes.append(saturated)
    if stack.pixel_size_um is None:
        notes.append(f"the stack states no pixel size; taken as the model's {pixel:g} um")
    settings = settings or ScanSettings.for_model(model, precision=precision)
    default = ScanPlan.for_model(
        model, output_planes_um=planes, candidate_step_um=candidate_step_um
    )
    plan = ScanPlan.build(
        planes, candidates_um=_snap(default.candidates_um, planes), reach_um=default.reach_um
    )

    def index_of(z_um: float) -> int:
        # a policy's choice is a stack plane, rounded (`choosable_planes`): find it again
        return int(np.argmin(np.abs(planes - z_um)))

    session = ReconstructionSession(
        model, planes, device=device, compute_dtype=compute_dtype(settings.precision)
    )
    session.check_memory(*truth.shape[1:], frames=len(plan.candidates_um))
    judge = ScanJudge(model, plan, settings, device=device)
    changes: list[float | None] = []
    at_m: list[float] = []
    stop_at: int | None = None
    stop_reason = StopReason.MAX_FRAMES
    volume_at_stop: NDArray[np.float32] | None = None
    policy = make_policy(settings.next_plane)
    state = ScanState(
        candidates_um=plan.candidates_um,
        choosable_um=choosable_planes(plan.candidates_um, planes.tolist()),
    )
    taken: list[float] = []
    for m in range(len(plan.candidates_um)):
        choice = policy.choose(state)
        if choice is None:
            break
        index = index_of(choice.z_um)
        z = float(planes[index])
        frame = truth[index]
        result = session.push(frame, z)
        verdict = judge.judge(m, frame, z, full=result, planned_um=z)
        state = state.after(z, judge.judged_planes_um, verdict.plane_changes, verdict.plane_signal)
        taken.append(z)
        changes.append(verdict.relative_change)
        used = np.asarray(taken)
        non_input = np.min(np.abs(planes[:, None] - used[None, :]), axis=1) > 1e-6
        at_m.append(_mean_psnr(result.volume, truth, non_input))
        if stop_at is None and verdict.stop is not None:
            stop_at, stop_reason = m + 1, verdict.stop
            volume_at_stop = result.volume.copy()
    if stop_at is None or volume_at_stop is None:  # the candidates ran out
        stop_at = len(taken)
        volume_at_stop = session.volume.copy()  # type: ignore[union-attr]
    used_z = np.asarray(taken[:stop_at])
    used_frames = truth[[index_of(float(z)) for z in used_z]]
    if sorts_by_z(settings.volume_order, stop_at, model):  # as the scan builds its volume
        ordered = np.argsort(used_z, kind="stable")
        session.reset()  # its state is not needed any more
        rebuild = ReconstructionSession(
            model,
            planes,
            device=device,
            compute_dtype=compute_dtype(settings.precision),
            normalization=stack_normalization(model, used_frames),
        )
        rebuilt = rebuild.run(list(used_frames[ordered]), used_z[ordered].tolist())
        volume_at_stop = rebuilt.volume.copy()
    evaluation = evaluate_arrays(
        volume_at_stop,
        planes,
        truth,
        planes,
        used_frames,
        used_z,
        pixel_um=pixel,
        model=model,
        device=device,
        precision=settings.precision,
    )
    ceiling, why_not = stack_noise_ceiling(truth, planes, evaluation, model)
    if why_not:
        notes.append(why_not)
    if model.linear_blend is not None:
        notes.append(
            f"the volume is a {model.linear_blend.describe()}: judge it on a stack that took no "
            "part in fitting it"
        )
    return Validation(
        model_name=model.name,
        model_sha256=model.sha256,
        planes_um=planes,
        candidates_um=list(plan.candidates_um),
        frames_used=stop_at,
        stop_reason=stop_reason,
        relative_changes=changes,
        recurrent_mz_psnr_at_m=at_m,
        evaluation=evaluation,
        volume=volume_at_stop,
        truth=truth,
        pixel_size_um=pixel,
        notes=notes,
        planes_taken_um=taken,
        next_plane=policy.name,
        noise_ceiling_per_plane_db=ceiling,
        relative_epsilon=settings.relative_epsilon if settings.epsilon is None else None,
        epsilon=settings.epsilon,
    )


def stack_noise_ceiling(
    truth: NDArray[np.float32],
    planes: NDArray[np.float64],
    evaluation: Evaluation,
    model: LoadedModel,
) -> tuple[list[float] | None, str]:
    """Per evaluated plane, the stack's noise ceiling (`rmz_acq.evaluation.noise`).

    ``(None, why)`` where the planes are too far apart to estimate the noise
    from them.
    """
    conditions = model.conditions
    dof = depth_of_field_um(
        float(conditions.get("emission_wavelength_nm", 520.0)),
        float(conditions.get("numerical_aperture", 1.4)),
        float(conditions.get("immersion_index", 1.515)),
    )
    if not noise_is_estimable(planes, dof):
        return None, (
            f"the stack's planes are up to {float(np.max(np.diff(planes))):.2f} um apart, "
            f"coarser than the {dof:.2f} um depth of field: its noise cannot be estimated "
            "from it, so scores are against the noisy stack only"
        )
    per_plane = noise_ceiling_db(truth)
    return [float(per_plane[int(np.argmin(np.abs(planes - z)))]) for z in evaluation.planes_um], ""


def _mean_psnr(
    volume: NDArray[np.floating], truth: NDArray[np.floating], keep: NDArray[np.bool_]
) -> float:
    """Mean PSNR over the ``keep`` planes, on the truth's intensity scale (as `evaluate`)."""
    from .evaluation.metrics import psnr
    from .evaluation.report import truth_normalisation

    norm = truth_normalisation(truth)
    a, b = norm.apply(np.asarray(volume)[keep]), norm.apply(np.asarray(truth)[keep])
    return float(np.mean([psnr(x, y) for x, y in zip(a, b, strict=True)]))


def write_validation(validation: Validation, folder: str | Path) -> dict[str, Path]:
    """``volume.ome.tif``, ``report.json`` and ``validation.png`` in ``folder``."""
    folder = Path(folder)
    planes = validation.planes_um
    step = float(np.median(np.diff(planes))) if len(planes) > 1 else None
    written = {
        "volume": write_zstack(
            folder / VOLUME,
            validation.volume,
            planes,
            validation.pixel_size_um,
            z_step_um=step,
            name=f"rmz_acq validate {validation.model_name} {validation.model_sha256[:12]}",
        ),
        "report": write_json_file(folder / REPORT, validation.to_json()),
    }
    written["figure"] = _figure(validation, folder / "validation.png")
    return written


def _figure(validation: Validation, path: Path) -> Path:
    """PSNR against z per method, and XZ projections of the stack and the volume."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    evaluation = validation.evaluation
    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    curve, views = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    z = np.asarray(evaluation.planes_um)
    for name, scores in evaluation.scores.items():
        curve.plot(z, scores["psnr"], label=name.replace("_", " "))
    for zi in evaluation.frames_z_um:
        curve.axvline(zi, color="grey", linewidth=0.6, linestyle=":")
    curve.set_xlabel("z (um)")
    curve.set_ylabel("PSNR against the stack (dB)")
    curve.set_title(validation.verdict()[:90], fontsize=7)
    curve.legend(fontsize=7)
    curve.grid(alpha=0.3)
    side = [validation.truth.max(axis=1), validation.volume.max(axis=1)]  # XZ projections
    lo, hi = np.percentile(side[0], [1, 99.8])
    both = np.concatenate([(p - lo) / max(hi - lo, 1e-9) for p in side], axis=1)
    views.imshow(np.clip(both, 0, 1), cmap="gray", aspect="auto", origin="lower")
    views.set_title("XZ max projection: stack (left), volume (right)", fontsize=8)
    views.set_xticks([])
    views.set_ylabel("plane")
    fig.tight_layout()
    fig.savefig(path)
    return path
