"""The workload file format (DESIGN section 2) as pydantic models.

The ``workloads`` list is a tagged union built from the workload registry,
so a new generator adds its own config model in its own file.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, field_validator, model_validator

from simcore.kernel.presets import presets
from simcore.strategies import strategy_names
from simcore.strict import Strict
from simcore.units import Duration, Pages
from simcore.workloads import workload_models
from simcore.workloads.host import HostConfig


def _one_of(value: str, names: list[str], what: str, where: str) -> str:
    """``value`` if it is one of ``names``, else the error with a hint."""
    if value not in names:
        hint = difflib.get_close_matches(value, names, n=1)
        tip = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(f"unknown {what} {value!r}{tip} ({where})")
    return value


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
    lazy_max_pages: Pages | None = Field(default=None, ge=0)  # or a size: 32MiB
    page_alloc: Literal["single", "bulk", "high_order"] | None = None
    pcp_high_order: bool | None = None
    huge_vmalloc: bool | None = None
    drain_in_workqueue: bool | None = None
    lazy_purge: Literal["list", "tree"] | None = None
    bpf_prog_pack_size: Literal["4K", "2M"] | None = None
    direct_map_page: Literal["1G", "2M"] | None = None
    cpa_collapse: bool | None = None
    cpa_nx_alias: bool | None = None
    cpa_rox: Literal["native", "ro_then_x"] | None = None
    fragmentation: float | None = Field(default=None, ge=0.0, le=1.0)
    buddyinfo: str | None = None
    meminfo: str | None = None
    vmallocinfo: str | None = None
    vmstat: str | None = None
    arena_locking: Literal["mutex", "spinlock"] | None = None
    arena_fault: Literal["fixup", "scratch_page"] | None = None
    pti: Literal["auto", "on", "off"] | None = None
    invlpgb: bool | None = None
    vread_vm_map_ram: bool | None = None
    module_layout: Literal["core_init", "per_type"] | None = None
    bpf_insn_aux: Literal["vzalloc", "vrealloc"] | None = None
    min_free_kbytes_max: int | None = Field(default=None, ge=128)
    thp: Literal["always", "madvise", "never"] | None = None
    vmalloc_huge_per_node: bool | None = None
    execmem_rox_users: Literal["modules", "modules_kprobes_ftrace"] | None = None
    rodata: Literal["full", "on"] | None = None
    linear_map_split: bool | None = None
    jump_label_batch: bool | None = None
    tlbi_range_kernel: bool | None = None
    pte_barriers: Literal["per_pte", "batched"] | None = None
    va_layout: Literal["bpf_region", "modules_128m", "modules_2g"] | None = None

    @field_validator("pti", "rodata", mode="before")
    @classmethod
    def _on_off_words(cls, v: Any) -> Any:
        # YAML reads a bare on/off as a boolean: pti=on, pti=off, rodata=on
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("preset", mode="before")
    @classmethod
    def _known_preset(cls, v: Any) -> str:
        names = list(presets())
        return _one_of(str(v), names, "kernel preset", f"known: {', '.join(names)}")


class SimConfig(Strict):
    tlb_model: Literal["exact", "fast"] = "fast"
    lock_model: Literal["exact", "fast"] = Field(
        default="exact",
        description="exact: every critical section a timeout and every lock "
        "wait an event; fast: locks on the vmalloc/vfree path taken by "
        "computation at the CPU's own time, a few events per operation "
        "(simcore/hw/locks.py)",
    )
    quantum: Duration = Field(default="100us", gt=0)
    samples: int = Field(default=50, ge=2, le=10_000)
    trace_out: str | None = Field(
        default=None,
        description="record the run's alloc/free events as a trace (.csv or .jsonl)",
    )


class StrategyRef(Strict):
    """One strategy under comparison: a name from `simcore list strategies`,
    its ``params`` (`simcore list strategies --params`; checked against the
    strategy's own model when the workload is resolved), and a ``label``
    naming its results column, so that one strategy can run twice with
    different parameters. A plain name stands for ``{name: NAME}``."""

    name: str
    label: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100
    )
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _plain_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _one_of(v, strategy_names(), "strategy", "see `simcore list strategies`")

    @model_validator(mode="after")
    def _label(self) -> StrategyRef:
        if self.label is None:
            self.label = self.name
        return self

    def __str__(self) -> str:
        return str(self.label)


def strategy_list(v: Any) -> Any:
    """``a``, ``a,b``, ``{name: a, params: ...}`` or a list of names and
    mappings: always a list."""
    if isinstance(v, str):
        return [s.strip() for s in v.split(",")]
    if isinstance(v, dict):
        return [v]
    return v


def _any_strategy_form(schema: dict[str, Any]) -> None:
    """JSON Schema of the strategy field as written, for editors: a name
    (or "a,b"), a mapping, or a list of names and mappings."""
    items = schema.get("items") or next(
        (a["items"] for a in schema.get("anyOf", []) if "items" in a), {}
    )
    entry = {"anyOf": [{"type": "string"}, items]}
    title, default = schema.get("title"), schema.get("default")
    schema.clear()
    schema["anyOf"] = [entry, {"type": "array", "items": entry, "minItems": 1}]
    schema.update({"title": title} if title else {})
    schema.update({"default": default} if default is not None else {})


def _once_each(refs: list[StrategyRef]) -> list[StrategyRef]:
    labels = [r.label for r in refs]
    for i, lab in enumerate(labels):
        if lab in labels[:i]:
            raise ValueError(
                f"strategy {lab!r} is listed twice; give each a different "
                "label to compare one strategy with different params"
            )
    return refs


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
    # a name, "a,b", {name, params, label}, or a list of those
    strategy: list[StrategyRef] = Field(
        default_factory=lambda: [StrategyRef(name="module_alloc")],
        min_length=1,
        json_schema_extra=_any_strategy_form,
    )
    # the same, for files that read better with the plural; validation
    # moves it to ``strategy``, so the resolved config has one spelling
    strategies: list[StrategyRef] | None = Field(
        default=None, min_length=1, exclude=True, json_schema_extra=_any_strategy_form
    )
    sim: SimConfig = Field(default_factory=SimConfig)
    host: HostConfig = Field(default_factory=HostConfig)
    workloads: list[WorkloadEntry] = Field(min_length=1)  # type: ignore[valid-type]

    @field_validator("strategy", "strategies", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return strategy_list(v)

    @field_validator("strategy", "strategies")
    @classmethod
    def _distinct(cls, v: list[StrategyRef] | None) -> list[StrategyRef] | None:
        return v if v is None else _once_each(v)

    @model_validator(mode="after")
    def _one_spelling(self) -> WorkloadFile:
        if self.strategies is not None:
            if "strategy" in self.model_fields_set:
                raise ValueError("give strategy or strategies, not both")
            self.strategy, self.strategies = self.strategies, None
        return self

    @property
    def strategy_labels(self) -> list[str]:
        return [str(r.label) for r in self.strategy]
