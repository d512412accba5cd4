"""How an adaptive scan stops: the rule, its limits, and the model's defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..model.weights import LoadedModel
from .plan import (
    DECISION_MARGIN,
    DECISION_PLANES,
    OTHER_SCAN_DEFAULTS,
    PRESET_SCAN_DEFAULTS,
    scan_defaults,
)
from .policies import DEFAULT_POLICY, POLICIES
from .stop_rules import (
    FrobeniusChange,
    MaxFrames,
    RelativeChange,
    RelativeTo,
    StopAt,
    StopRule,
    TimeBudget,
)

__all__ = [
    "DEFAULT_RELATIVE_EPSILON",
    "PRESET_RELATIVE_EPSILON",
    "ScanSettings",
    "default_relative_epsilon",
    "sorts_by_z",
]

DEFAULT_RELATIVE_EPSILON = OTHER_SCAN_DEFAULTS.relative_epsilon
PRESET_RELATIVE_EPSILON = {
    name: defaults.relative_epsilon for name, defaults in PRESET_SCAN_DEFAULTS.items()
}


def default_relative_epsilon(model: LoadedModel | str) -> float:
    """The relative epsilon a scan with this model (or model name) stops at by default.

    The shipped presets have their own (measured: `PRESET_SCAN_DEFAULTS`),
    calibrated weights the one `rmz-acq calibrate` chose for them; any other
    model gets `DEFAULT_RELATIVE_EPSILON` (`scan_defaults`).
    """
    return scan_defaults(model).relative_epsilon


def sorts_by_z(volume_order: str, n_frames: int, model: LoadedModel) -> bool:
    """Whether a scan's final volume is rebuilt from its frames sorted by z.

    With ``volume_order="z"``, for two frames or more and no more than the
    network's training sequences had (`LoadedModel.trained_frames`): sorted
    by z, a longer sequence is one the network never saw, and the presets
    score lower on it than on the same frames in the order a coarse-to-fine
    scan took them (seventeen frames of a worm: 0.8 dB; docs/benchmarks.md).
    """
    most = model.trained_frames
    return volume_order == "z" and n_frames > 1 and (most is None or n_frames <= most)


class ScanSettings(BaseModel):
    """Stop rule and limits of an adaptive scan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epsilon: float | None = Field(None, ge=0, description="absolute ||V_M - V_(M-1)||_F")
    relative_epsilon: float | None = Field(DEFAULT_RELATIVE_EPSILON, ge=0)
    min_frames: int = Field(2, ge=1)
    max_frames: int | None = Field(None, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    exposure_ms: float | None = Field(None, gt=0)
    save_history: bool = False
    strict: bool = False
    precision: Literal["float32", "bfloat16"] = "float32"
    decision_planes: int | None = Field(
        DECISION_PLANES,
        ge=2,
        description="output planes the stop rule is measured on as each frame arrives, the "
        "rest completed in the background; None: decide on the full grid",
    )
    decision_margin: float = Field(
        DECISION_MARGIN,
        ge=0,
        description="when the decision planes' change is within this fraction of the "
        "threshold (either side), the full grid's change decides that frame (the scan "
        "waits for the completion to reach it); 0: the decision planes always decide",
    )
    next_plane: str = Field(
        DEFAULT_POLICY, description="where each frame is taken: a name in `POLICIES`"
    )
    stop_at: StopAt = Field(
        "any",
        description="where the rule may end the scan: after any frame, or only when the "
        "planes taken are evenly spaced over the candidates' span ('even': after each "
        "complete sweep of a coarse-to-fine policy)",
    )
    relative_to: RelativeTo = Field(
        "volume",
        description="what the relative epsilon's change is relative to: the volume's norm, "
        "or a weighted geometric mean of its structure (norm about its mean) and the frames' "
        "noise ('structure-noise', `stop_rules.relative_change`)",
    )
    volume_order: Literal["as-taken", "z"] = Field(
        "as-taken",
        description="the final volume from the frames as taken (the live volume), or "
        "rebuilt once the scan stops from the frames sorted by z, as a z-stack is pushed "
        "(one more reconstruction after the last frame), when there are no more frames "
        "than the network was trained on (`sorts_by_z`)",
    )

    @field_validator("next_plane")
    @classmethod
    def _known_policy(cls, name: str) -> str:
        if name not in POLICIES:
            raise ValueError(
                f"next-plane policy {name!r} is not known; choose one of {', '.join(POLICIES)}"
            )
        return name

    @model_validator(mode="after")
    def _a_rule(self) -> ScanSettings:
        if self.max_frames is not None and self.max_frames < self.min_frames:
            raise ValueError(f"max_frames {self.max_frames} is below min_frames {self.min_frames}")
        return self

    @classmethod
    def for_model(cls, model: LoadedModel | str, **overrides: Any) -> ScanSettings:
        """The settings a scan with ``model`` (or a model name) uses by default.

        The stop rule is the model's relative epsilon, next-plane policy,
        where the rule may stop and the order of the final volume
        (`scan_defaults`) unless ``overrides`` give ``epsilon`` (the
        paper's absolute rule), ``relative_epsilon``, ``next_plane``,
        ``stop_at``, ``relative_to``, ``volume_order`` or ``min_frames`` (at most
        ``max_frames`` when only that is given); anything else in ``overrides`` is a
        field.  An override of ``None`` means "not given" (as an unset
        command-line flag): to decide on the full grid, set
        ``decision_planes=None`` on the result (``settings.model_copy(update=...)``).
        """
        defaults = scan_defaults(model)
        given = {k: v for k, v in overrides.items() if v is not None}
        given.setdefault("next_plane", defaults.next_plane)
        given.setdefault("stop_at", defaults.stop_at)
        given.setdefault("volume_order", defaults.volume_order)
        given.setdefault("relative_to", defaults.relative_to)
        # A frame limit below the model's minimum lowers the minimum: the user
        # asked for at most that many frames.
        limit = given.get("max_frames")
        given.setdefault(
            "min_frames", defaults.min_frames if limit is None else min(defaults.min_frames, limit)
        )
        if "epsilon" in given:
            given.setdefault("relative_epsilon", None)
        else:
            given.setdefault("relative_epsilon", defaults.relative_epsilon)
        return cls(**given)

    def rules(self) -> list[StopRule]:
        rules: list[StopRule] = []
        if self.epsilon is not None:
            rules.append(FrobeniusChange(self.epsilon))
        if self.relative_epsilon is not None and self.epsilon is None:
            rules.append(RelativeChange(self.relative_epsilon))
        if self.max_frames is not None:
            rules.append(MaxFrames(self.max_frames))
        if self.time_budget_s is not None:
            rules.append(TimeBudget(self.time_budget_s))
        return rules
