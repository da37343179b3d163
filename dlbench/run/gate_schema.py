"""The schema of a suite's ``gate:`` section, checked when the suite loads (every key known,
every number finite and in range); :class:`dlbench.analysis.gate.GateConfig` turns it into
:class:`~dlbench.analysis.thresholds.Thresholds`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ThresholdSpec(BaseModel):
    """Thresholds of a suite's ``gate:`` section (unset fields keep the defaults)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    speed: float | None = Field(
        default=None, ge=0, description="relative speed change, 0.05 = 5%")
    accuracy: float | None = Field(
        default=None, ge=0, le=1, description="absolute accuracy drop, 0.01 = 1 point")
    error: float | None = Field(
        default=None, ge=0, description="relative increase of rmse/mae/loss")
    memory_limit_mb: float | None = Field(
        default=None, gt=0, description="peak memory limit in MB")
    memory_increase: float | None = Field(
        default=None, ge=0, description="relative peak memory growth")
    memory_floor_mb: float | None = Field(
        default=None, ge=0, description="ignore growth below this (MB)")
    alpha: float | None = Field(
        default=None, gt=0, lt=1, description="FDR level (Benjamini-Hochberg)")

    def values(self) -> dict[str, Any]:
        names = {"speed": "min_effect", "accuracy": "accuracy_drop", "error": "error_increase"}
        return {names.get(k, k): v for k, v in self.model_dump().items() if v is not None}


class GateSchema(BaseModel):
    """A suite's ``gate:`` section, e.g.
    ``{thresholds: {speed: 0.05, accuracy: 0.01}, cells: {"speed/vision/*": {speed: 0.1}}}``."""

    model_config = ConfigDict(extra="forbid")

    thresholds: ThresholdSpec = Field(default_factory=lambda: ThresholdSpec())
    cells: dict[str, ThresholdSpec] = Field(
        default_factory=dict, description="per-cell overrides by key glob; later patterns win")
    confirm: bool = Field(
        default=True, description="re-run flagged regressions once before failing")
    allow_inconclusive: bool = Field(
        default=False, description="inconclusive rows do not fail the gate")
    allow_missing: bool = Field(
        default=False, description="baseline cells absent in head do not fail")
    informational: list[str] = Field(default_factory=lambda: ["first_call"],
                                     description="measurements reported but never gating")
