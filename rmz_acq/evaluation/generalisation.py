"""Judging a model beyond its training data: held-out structures and real stacks.

A `Case` is one volume to reconstruct: a few input frames, their z, and a
ground truth on the output planes.  Cases come from simulated structure
families (`simulated_cases`) or from real recorded wide-field z-stacks
(`stack_case`), where the inputs are planes of the stack and the truth is the
stack itself.  `score_case` scores Recurrent-MZ and the baselines on both
scales (`report.Scale`), how much the result depends on the order the frames
arrive in, and whether the volume at an input plane is at least as close to
the truth as the input frame was.

``benchmarks/generalisation.py`` prints the table; the README quotes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from simulators.optics import PsfModel
from simulators.samples import STRUCTURE_FAMILIES, StructureFamily

from ..errors import RmzError
from ..model.normalization import fixed_normalization
from ..model.weights import LoadedModel, training_stages
from ..session import ReconstructionSession
from ..training.conditions import ImagingConditions
from ..training.data import OpticsVariety, SampleVariety, make_simulated_volume
from ..training.trainer import EVALUATION_SEED
from .metrics import psnr
from .report import evaluate_arrays

__all__ = [
    "Case",
    "CaseScore",
    "families_seen_in_training",
    "flowdec_stack",
    "score_case",
    "simulated_cases",
    "stack_case",
]


@dataclass(frozen=True)
class Case:
    """One volume to reconstruct from ``frames`` and score against ``truth``.

    ``clean`` says whether the truth is noise-free (simulated), which is what
    makes the input-plane check meaningful.
    """

    name: str
    frames: NDArray[np.float32]
    frames_z_um: list[float]
    truth: NDArray[np.float32]
    planes_um: NDArray[np.float64]
    clean: bool


@dataclass(frozen=True)
class CaseScore:
    """Scores of one case: means over the non-input planes.

    ``order_psnr_db`` holds the mean PSNR (truth scale) of the volume for
    every order of the input frames, over every third non-input plane;
    ``input_plane_gain_db`` per input plane, PSNR of the volume there minus
    PSNR of the input frame itself (both against the noise-free truth;
    ``None`` for a recorded truth); ``z_order_db``, the entry of
    ``order_psnr_db`` for the frames pushed lowest z first (as
    ``rmz-acq reconstruct --order z`` pushes them).
    """

    per_volume: dict[str, dict[str, float]]
    truth_scale: dict[str, dict[str, float]]
    order_psnr_db: list[float]
    input_plane_gain_db: list[float] | None
    z_order_db: float | None = None

    @property
    def order_spread_db(self) -> float:
        return float(np.ptp(self.order_psnr_db)) if self.order_psnr_db else float("nan")

    @property
    def z_order_gain_db(self) -> float:
        """The z-sorted order against the mean over every order (nan without orders)."""
        if self.z_order_db is None or not self.order_psnr_db:
            return float("nan")
        return self.z_order_db - float(np.mean(self.order_psnr_db))


def simulated_cases(
    conditions: ImagingConditions,
    inputs_um: Sequence[float],
    planes_um: NDArray[np.floating],
    *,
    variety: SampleVariety,
    family: StructureFamily | None = None,
    psf_model: PsfModel = "scalar",
    optics: OpticsVariety = "ideal",
    n_volumes: int = 2,
    fov_px: int = 256,
    thin: bool = False,
    cache: Path | None = None,
) -> list[Case]:
    """Held-out simulated volumes (seeds from `EVALUATION_SEED`), noise-free truth.

    ``thin``: the structures held in a slab of 15-60 % of the depth, empty
    above and below (``--thin-fraction`` of training), so an input frame may
    see only out-of-focus haze.  ``cache``: a folder where each volume's
    frames and truth are kept once simulated (a third of the time of scoring
    a model on them), under a key of every argument and the simulator's
    source, so a changed simulator or protocol never reads a stale volume.
    """
    families = (family,) if family is not None else STRUCTURE_FAMILIES
    name = f"{'thin-' if thin else ''}{family or variety}"
    key = _case_key(
        conditions, list(inputs_um), planes_um, variety, family, psf_model, optics, fov_px, thin
    )
    cases = []
    for i in range(n_volumes):
        seed = EVALUATION_SEED + i
        path = cache / f"{name}-{seed}-{key}.npz" if cache is not None else None
        if path is not None and path.is_file():
            with np.load(path) as kept:
                frames, truth = kept["frames"], kept["truth"]
            cases.append(_simulated_case(name, frames, inputs_um, truth, planes_um))
            continue
        volume = make_simulated_volume(
            conditions,
            seed,
            fov_px,
            (psf_model,),
            (variety,),
            structure_families=families,
            optics_varieties=(optics,),
            thin_fraction=1.0 if thin else 0.0,
        )
        rng = np.random.default_rng(seed)
        frames = np.stack([volume.frame(float(z), rng) for z in inputs_um]).astype(np.float32)
        truth = np.stack([volume.target(float(z)) for z in planes_um])
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial.npz")
            np.savez(partial, frames=frames, truth=truth)
            partial.replace(path)  # a run killed mid-write leaves no half a volume
        cases.append(_simulated_case(name, frames, inputs_um, truth, planes_um))
    return cases


def _simulated_case(
    name: str,
    frames: NDArray[np.float32],
    inputs_um: Sequence[float],
    truth: NDArray[np.float32],
    planes_um: NDArray[np.floating],
) -> Case:
    return Case(
        name=name,
        frames=frames,
        frames_z_um=[float(z) for z in inputs_um],
        truth=truth,
        planes_um=np.asarray(planes_um, np.float64),
        clean=True,
    )


def _case_key(*arguments: object) -> str:
    """A short hash of a case's arguments and of the code that simulates it.

    The sources are the simulator package and the training data and
    conditions modules: a change to any of them is a new key.
    """
    import simulators

    from ..training import conditions, data

    sources = sorted(Path(simulators.__file__).parent.rglob("*.py"))
    sources += [Path(str(conditions.__file__)), Path(str(data.__file__))]
    plain = [a.tolist() if isinstance(a, np.ndarray) else a for a in arguments]
    digest = hashlib.sha256(repr(plain).encode())
    for source in sources:
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def stack_case(
    name: str, stack: NDArray[np.floating], depth_um: float, inputs_um: Sequence[float]
) -> Case:
    """A recorded z-stack spread evenly over ``depth_um``; inputs are its nearest planes.

    Where the stack's own z step is unknown (as for the stacks that ship in
    packages), mapping it onto the preset's depth is the assumption that it
    was recorded under the preset's sampling.
    """
    data = np.asarray(stack, np.float32)
    if data.ndim != 3 or data.shape[0] < 3:
        raise RmzError(f"{name}: a z-stack needs shape (z, y, x) with 3+ planes, not {data.shape}")
    z = np.linspace(0.0, depth_um, data.shape[0])
    chosen = [int(np.argmin(np.abs(z - zi))) for zi in inputs_um]
    return Case(
        name=name,
        frames=data[chosen],
        frames_z_um=[float(z[j]) for j in chosen],
        truth=data,
        planes_um=z,
        clean=False,
    )


def flowdec_stack(name: str) -> NDArray[np.float32]:
    """A real wide-field stack from the ``flowdec`` wheel: ``neuron`` or ``bead``.

    Read straight from the installed files, without importing flowdec (which
    needs TensorFlow): ``pip install --no-deps flowdec==1.1.0`` is enough.
    """
    import importlib.metadata

    import tifffile

    folders = {"neuron": "neuron-25pct", "bead": "bead-25pct"}
    if name not in folders:
        raise RmzError(f"unknown flowdec stack {name!r}; choose {', '.join(folders)}")
    try:
        dist = importlib.metadata.distribution("flowdec")
    except importlib.metadata.PackageNotFoundError:
        raise RmzError(
            "the real stacks ship in the flowdec wheel: pip install --no-deps flowdec==1.1.0"
        ) from None
    path = Path(str(dist.locate_file(f"flowdec/datasets/{folders[name]}/data.tif")))
    if not path.is_file():
        raise RmzError(f"{path} is missing from the flowdec installation")
    return np.asarray(tifffile.imread(path), np.float32)


def _reconstruct(
    model: LoadedModel,
    case: Case,
    order: Sequence[int],
    device: str | None,
    planes: NDArray[np.float64] | None = None,
    normalization: str = "first",
) -> NDArray[np.float32]:
    planes = case.planes_um if planes is None else planes
    fixed = fixed_normalization(case.frames, model.model.config.intensity, normalization)
    middle = 0.5 * float(case.planes_um[0] + case.planes_um[-1])  # of the whole grid
    session = ReconstructionSession(
        model, planes, device=device, normalization=fixed, blend_centre_um=middle
    )
    result = session.run([case.frames[i] for i in order], [case.frames_z_um[i] for i in order])
    return result.volume.copy()


def _non_input(case: Case) -> NDArray[np.bool_]:
    step = float(np.median(np.diff(case.planes_um))) if len(case.planes_um) > 1 else 1.0
    z = np.asarray(case.frames_z_um)
    return np.array([np.all(np.abs(z - p) >= 0.5 * step) for p in case.planes_um])


def score_case(
    model: LoadedModel,
    case: Case,
    *,
    orders: bool = True,
    device: str | None = None,
    normalization: str = "first",
) -> CaseScore:
    """Recurrent-MZ and the baselines on ``case``; every frame order when ``orders``.

    ``normalization``: the intensity statistics of the frame pushed first
    (``"first"``, as a stream has them) or of all the frames together
    (``"all"``, `IntensityNormalization.from_frames`).
    """
    order_list = list(permutations(range(len(case.frames)))) if orders else []
    volume = _reconstruct(model, case, range(len(case.frames)), device, None, normalization)
    frames_z = np.asarray(case.frames_z_um)
    scales = {}
    for scale in ("per_volume", "truth"):
        evaluation = evaluate_arrays(
            volume,
            case.planes_um,
            case.truth,
            case.planes_um,
            case.frames,
            frames_z,
            pixel_um=0.1,
            model=model,
            device=device,
            scale=scale,  # type: ignore[arg-type]
        )
        scales[scale] = evaluation.means(non_input_only=True)
    # Every third non-input plane is enough to see an order change (and a
    # third of the cost: each order is a whole reconstruction).
    keep = np.flatnonzero(_non_input(case))[::3]
    order_psnr = []
    for order in order_list:
        other = _reconstruct(model, case, order, device, case.planes_um[keep], normalization)
        order_psnr.append(
            float(np.mean([psnr(a, b) for a, b in zip(other, case.truth[keep], strict=True)]))
        )
    gain = None
    if case.clean:
        gain = []
        for frame, z in zip(case.frames, case.frames_z_um, strict=True):
            j = int(np.argmin(np.abs(case.planes_um - z)))
            if abs(case.planes_um[j] - z) > 1e-6:
                continue
            gain.append(psnr(volume[j], case.truth[j]) - psnr(frame, case.truth[j]))
    z_sorted = tuple(int(i) for i in np.argsort(case.frames_z_um, kind="stable"))
    z_order = order_psnr[order_list.index(z_sorted)] if order_list else None
    return CaseScore(scales["per_volume"], scales["truth"], order_psnr, gain, z_order)


def families_seen_in_training(model: LoadedModel) -> set[str]:
    """What the model's training could draw: structure families, and ``own``.

    From its stored settings, over every stage they record (a stage started
    from other weights inherits what those saw); a model without them (the
    first presets) was trained on its preset's own sample (``own``: the worm
    band, or beads) alone.
    """
    stages = training_stages(model.metadata)
    if not stages:
        return {"own"}
    seen: set[str] = set()
    for settings in stages:
        varieties = settings.get("sample_varieties", ("standard",))
        if {"standard", "wide"} & set(varieties):
            seen.add("own")
        if "structures" in varieties:
            families = set(settings.get("structure_families", STRUCTURE_FAMILIES))
            seen |= families
            if settings.get("thin_fraction", 0.0) > 0:
                seen |= {f"thin-{f}" for f in families}
    return seen
