"""The workload file format (DESIGN section 2) as pydantic models.

The ``workloads`` list is a tagged union built from the workload registry,
so a new generator adds its own config model in its own file.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, field_validator

from simcore.kernel.presets import presets
from simcore.strategies import strategy_names
from simcore.strict import Strict
from simcore.units import Duration
from simcore.workloads import workload_models


class MachineConfig(Strict):
    """``profile`` names a file in hw_profiles/ (or a path); ``cpus`` is the
    number of online CPUs (default: all threads of the profile). Any other
    key overrides the profile field of that name (checked on resolution)."""

    model_config = ConfigDict(extra="allow")
    profile: str = "skylake-sp"
    cpus: int | None = Field(default=None, ge=1, le=4096)


class KernelConfig(Strict):
    preset: str = "latest"
    vmap_locking: Literal["global", "per_node"] | None = None
    vmap_nodes: int | None = Field(default=None, ge=0, le=1024)
    lazy_max_pages: int | None = Field(default=None, ge=0)
    page_alloc: Literal["single", "bulk", "high_order"] | None = None
    drain_in_workqueue: bool | None = None
    direct_map_page: Literal["1G", "2M"] | None = None
    cpa_collapse: bool | None = None
    cpa_nx_alias: bool | None = None
    cpa_rox: Literal["native", "ro_then_x"] | None = None
    fragmentation: float | None = Field(default=None, ge=0.0, le=1.0)
    buddyinfo: str | None = None
    arena_locking: Literal["mutex", "spinlock"] | None = None
    arena_fault: Literal["fixup", "scratch_page"] | None = None

    @field_validator("preset", mode="before")
    @classmethod
    def _known_preset(cls, v: Any) -> str:
        v = str(v)
        names = list(presets())
        if v not in names:
            hint = difflib.get_close_matches(v, names, n=1)
            tip = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ValueError(
                f"unknown kernel preset {v!r}{tip} (known: {', '.join(names)})"
            )
        return v


class SimConfig(Strict):
    tlb_model: Literal["exact", "fast"] = "fast"
    quantum: Duration = Field(default="100us", gt=0)
    samples: int = Field(default=50, ge=2, le=10_000)
    trace_out: str | None = Field(
        default=None,
        description="record the run's alloc/free events as a trace (.csv or .jsonl)",
    )


def _workload_entry() -> Any:
    models = workload_models()
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007


WorkloadEntry = _workload_entry()


class WorkloadFile(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    seed: int = Field(default=1, ge=0, lt=2**63)
    duration: Duration = Field(gt=0)
    machine: MachineConfig = Field(default_factory=MachineConfig)
    kernel: KernelConfig = Field(default_factory=KernelConfig)
    strategy: list[str] = Field(default_factory=lambda: ["module_alloc"], min_length=1)
    sim: SimConfig = Field(default_factory=SimConfig)
    workloads: list[WorkloadEntry] = Field(min_length=1)  # type: ignore[valid-type]

    @field_validator("strategy", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [s.strip() for s in v.split(",")]
        if isinstance(v, list):
            known = strategy_names()
            for s in v:
                if not isinstance(s, str) or s not in known:
                    hint = difflib.get_close_matches(str(s), known, n=1)
                    tip = f"; did you mean {hint[0]!r}?" if hint else ""
                    raise ValueError(
                        f"unknown strategy {s!r}{tip} (see `simcore list strategies`)"
                    )
            if len(set(v)) != len(v):
                raise ValueError("a strategy is listed twice")
        return v
