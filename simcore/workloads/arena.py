"""``arena``: BPF arenas populated, churned and accessed from both views.

Each of ``arenas`` arenas (``size`` bytes of user VMA, at most 4 GiB) is
created and mmap()ed by one user process at the start, then populated with
``populate.pages`` pages, by ``bpf_arena_alloc_pages()`` calls of
``alloc.pages`` pages each (1: single pages; up to 1024: one batch; more:
a large block the kernel maps in 1024-page batches) or by user space
touching them (``by: user``: ``arena_vm_fault()`` allocates). ``churn``
then allocates more (same call size) at a rate per arena and frees each
after an exponential lifetime, from a sleepable program or, with
``sleepable: false``, from a non-sleepable one (deferred frees: needs
``kernel.arena_locking: spinlock``).

Accesses start once every arena is populated. ``bpf.cpus`` CPUs run BPF
programs that touch ``bpf.rate`` arena pages per second each, through
kernel-view addresses and the data TLBs of the CPU running them, in batches
of one ``kernel.quantum``; ``user.cpus`` CPUs of the user process do the same
at user addresses (separate TLB entries), faulting pages in on first touch.
Patterns pick among the live pages: ``uniform``, ``zipf`` (skew
``zipf``; rank = allocation order), ``scan`` (sequential, ``run``
touches per page, wrapping) and
``hash`` (an arena hash table: one bucket-array page from the first eighth
of the pages, then ``chain`` node pages anywhere). ``stray`` is the share
of accesses at random offsets whatever their state: BPF-side faults
(exception fix-up or scratch page, by era) or user-side lazy allocation.

BPF CPUs are the first ``bpf.cpus`` CPUs, the user process runs on the
last ``user.cpus`` (its mm_cpumask); allocations and frees run on BPF
CPUs. ``destroy_at`` tears every arena down (munmap, arena_map_free()).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import simpy
from pydantic import Field, field_validator, model_validator

from simcore.constants import PAGE, PAGE_SHIFT, SZ_4G
from simcore.dists import Popularity
from simcore.errors import ConfigError
from simcore.kernel.bpf.arena import BpfArena, UserMm
from simcore.strategies.arena_base import ArenaStrategy
from simcore.strict import Strict
from simcore.units import Duration, Rate, Size
from simcore.workloads.execution import exp_ns

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DESCRIPTION = "BPF arenas: lazy population, churn, BPF- and user-side accesses"

# Share of the live pages holding a hash table's bucket array: an estimate
# for an arena_htab-like table whose nodes outnumber buckets about 8 to 1.
HASH_BUCKET_SHARE = 0.125


class Alloc(Strict):
    pages: int = Field(
        default=1, ge=1, le=1 << 20, description="pages per bpf_arena_alloc_pages"
    )


class Populate(Strict):
    pages: int = Field(default=0, ge=0, le=1 << 20, description="pages per arena")
    by: Literal["bpf", "user"] = "bpf"


class Churn(Strict):
    rate: Rate = Field(
        default=0.0, ge=0, description="allocations per second per arena"
    )
    lifetime: Duration = Field(default="10ms", gt=0, description="mean, exponential")
    sleepable: bool = Field(default=True, description="false: deferred frees")


class Access(Strict):
    cpus: int = Field(default=1, ge=0, le=4096)
    rate: Rate = Field(default=0.0, ge=0, description="page touches per second per CPU")
    pattern: Literal["uniform", "zipf", "scan", "hash"] = "uniform"
    zipf: float = Field(default=1.0, gt=0, le=5)
    chain: int = Field(
        default=2, ge=0, le=64, description="hash: node pages per lookup"
    )
    run: int = Field(default=16, ge=1, le=4096, description="scan: touches per page")
    insns_per_access: int = Field(default=20, ge=1, description="for dtlb.mpki")
    stray: float = Field(default=0.0, ge=0, le=1, description="share at random offsets")


class ArenaWorkload(Strict):
    type: Literal["arena"]
    arenas: int = Field(default=1, ge=1, le=1024)
    size: Size = Field(default="4GiB", gt=0, description="user VMA bytes, <= 4 GiB")
    segv_on_fault: bool = False
    alloc: Alloc = Field(default_factory=Alloc)
    populate: Populate = Field(default_factory=Populate)
    churn: Churn = Field(default_factory=Churn)
    bpf: Access = Field(default_factory=lambda: Access(cpus=1))
    user: Access = Field(default_factory=lambda: Access(cpus=1))
    destroy_at: Duration | None = Field(default=None, gt=0)

    @field_validator("size")
    @classmethod
    def _max_4g(cls, v: int) -> int:
        # arena_map_alloc(): max_entries * PAGE_SIZE <= SZ_4G, else -E2BIG
        if v > SZ_4G or v % PAGE:
            raise ValueError("size must be a multiple of 4 KiB and at most 4 GiB")
        return v

    @model_validator(mode="after")
    def _sizes(self) -> ArenaWorkload:
        if self.populate.pages > self.size >> PAGE_SHIFT:
            raise ValueError("populate.pages is larger than the arena")
        if self.bpf.cpus < 1:
            raise ValueError("bpf.cpus must be at least 1 (allocations run there)")
        return self

    def start(self, kernel: Kernel, index: int) -> None:
        if not self.churn.sleepable and kernel.knobs.arena_locking != "spinlock":
            path = f"workloads[{index}].churn.sleepable"
            raise ConfigError(
                "bpf_arena_free_pages() is KF_SLEEPABLE before the Dec 2025 "
                "arena: a non-sleepable program cannot free",
                file=kernel.ctx.file,
                path=path,
                line=_line_of(kernel.ctx.file, path),
                expected="sleepable: true, or kernel.arena_locking: spinlock",
            )
        _Run(self, kernel, index).start()


def _line_of(file: str, path: str) -> int | None:
    """The line of a workload key, read again from the file (errors only)."""
    from simcore.yamlsrc import load_yaml_file, parse_set_path

    try:
        return load_yaml_file(file).line_of(parse_set_path(path))
    except Exception:  # a --set value or an unreadable file: no line
        return None


class _Live:
    """Live arena pages as keys ``arena << 32 | pgoff``, in an array with
    swap-remove (O(1) add and remove; rank = position, about allocation
    order, as Zipf and scan use it)."""

    def __init__(self) -> None:
        self.keys = np.zeros(1024, dtype=np.int64)
        self.n = 0
        self.pos: dict[int, int] = {}

    def add(self, arena: int, pgoff: int, count: int) -> None:
        need = self.n + count
        if need > len(self.keys):
            self.keys = np.resize(self.keys, max(need, 2 * len(self.keys)))
        base = arena << 32
        for i in range(count):
            key = base | (pgoff + i)
            if key in self.pos:
                continue
            self.keys[self.n] = key
            self.pos[key] = self.n
            self.n += 1

    def remove(self, arena: int, pgoff: int, count: int) -> None:
        base = arena << 32
        for i in range(count):
            idx = self.pos.pop(base | (pgoff + i), None)
            if idx is None:
                continue
            self.n -= 1
            last = int(self.keys[self.n])
            if idx != self.n:
                self.keys[idx] = last
                self.pos[last] = idx

    def drop_arena(self, arena: int) -> None:
        keys = self.keys[: self.n]
        gone = keys[(keys >> 32) == arena]
        for key in gone.tolist():
            self.remove(key >> 32, key & 0xFFFFFFFF, 1)


class _Run:
    def __init__(self, cfg: ArenaWorkload, kernel: Kernel, index: int) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.tag = f"workload.{index}.arena"
        n = kernel.nr_cpus
        self.bpf_cpus = list(range(min(cfg.bpf.cpus, n)))
        ucpus = min(cfg.user.cpus, n)
        self.user_cpus = list(range(n - ucpus, n))
        # the process's mm_cpumask: where its threads run (CPU 0 at least,
        # for the thread that created and mapped the arenas)
        self.mm = UserMm(self.user_cpus or [self.bpf_cpus[0]])
        self.arenas: list[BpfArena | None] = [None] * cfg.arenas
        # kaddr(0) of each live arena, 0 while absent or closing
        self.kbase = np.zeros(cfg.arenas, dtype=np.uint64)
        self.inflight = [0] * cfg.arenas
        self.closing = [False] * cfg.arenas
        self.live = _Live()
        self._cdf: dict[int, np.ndarray] = {}
        # a CPU runs one program at a time: its kfunc calls queue up
        self.cpu_busy = {c: simpy.Resource(kernel.env, 1) for c in self.bpf_cpus}

    def start(self) -> None:
        env = self.kernel.env
        setups = [env.process(self._setup(i)) for i in range(self.cfg.arenas)]
        ready = env.all_of(setups)
        self.setups = setups
        c = self.cfg
        if c.churn.rate > 0:
            for i in range(c.arenas):
                env.process(self._churn(i, ready))
        for side, acc, cpus in (
            ("bpf", c.bpf, self.bpf_cpus),
            ("user", c.user, self.user_cpus),
        ):
            if acc.rate > 0:
                for cpu in cpus:
                    env.process(self._accessor(side, acc, cpu, ready))
        if c.destroy_at is not None:
            for i in range(c.arenas):
                env.process(self._destroy(i))

    # -- setup ---------------------------------------------------------------------
    def _setup(self, i: int):
        kernel, c = self.kernel, self.cfg
        cpu = self.bpf_cpus[i % len(self.bpf_cpus)]
        arena = yield from BpfArena.create(
            kernel, cpu, c.size >> PAGE_SHIFT, segv_on_fault=c.segv_on_fault
        )
        if arena is None:
            return
        yield from arena.mmap(cpu, self.mm)
        self.arenas[i] = arena
        self.kbase[i] = arena.kaddr(0)
        want = c.populate.pages
        if c.populate.by == "user":
            ucpu = self.mm.cpus[i % len(self.mm.cpus)]
            for pgoff in range(want):
                if (yield from arena.user_fault(ucpu, pgoff)) is not None:
                    self.live.add(i, pgoff, 1)
            return
        done = 0
        while done < want:
            n = min(c.alloc.pages, want - done)
            uaddr = yield from arena.alloc_pages(cpu, 0, n)
            if not uaddr:
                break
            self.live.add(i, arena.compute_pgoff(uaddr), n)
            done += n

    # -- churn ----------------------------------------------------------------------
    def _churn(self, i: int, ready):
        kernel, c = self.kernel, self.cfg
        yield ready
        rng = kernel.rng(f"{self.tag}.churn{i}")
        gap = 1e9 / c.churn.rate
        while not self.closing[i] and self.arenas[i] is not None:
            yield kernel.env.timeout(exp_ns(rng, gap))
            cpu = self.bpf_cpus[int(rng.integers(len(self.bpf_cpus)))]
            life = exp_ns(rng, c.churn.lifetime)
            kernel.env.process(self._short_lived(i, cpu, life))

    def _short_lived(self, i: int, cpu: int, life: int):
        kernel, c = self.kernel, self.cfg
        arena = self.arenas[i]
        if arena is None or self.closing[i]:
            return
        self.inflight[i] += 1
        n = c.alloc.pages
        with self.cpu_busy[cpu].request() as turn:
            yield turn
            uaddr = yield from arena.alloc_pages(cpu, 0, n)
        self.inflight[i] -= 1
        if not uaddr:
            return
        pgoff = arena.compute_pgoff(uaddr)
        self.live.add(i, pgoff, n)
        yield kernel.env.timeout(life)
        if self.closing[i]:
            return
        self.live.remove(i, pgoff, n)
        self.inflight[i] += 1
        with self.cpu_busy[cpu].request() as turn:
            yield turn
            yield from arena.free_pages(cpu, uaddr, n, sleepable=c.churn.sleepable)
        self.inflight[i] -= 1
        kernel.metrics.inc("workload.arena.churned")

    def _destroy(self, i: int):
        env = self.kernel.env
        yield env.timeout(self.cfg.destroy_at)
        yield self.setups[i]  # a map is freed only once it exists
        self.closing[i] = True
        self.kbase[i] = 0
        self.live.drop_arena(i)
        while self.inflight[i]:
            yield env.timeout(self.kernel.quantum)
        arena = self.arenas[i]
        if arena is not None:
            self.arenas[i] = None
            yield from arena.destroy(self.bpf_cpus[i % len(self.bpf_cpus)])

    # -- accesses ----------------------------------------------------------------------
    def _ranks(self, acc: Access, rng, k: int, cursor: list[int]) -> np.ndarray:
        """Positions in the live array for ``k`` touches."""
        n = self.live.n
        if acc.pattern == "uniform":
            return rng.integers(n, size=k)
        if acc.pattern == "zipf":
            cdf = self._cdf.get(n)
            if cdf is None:
                if len(self._cdf) > 64:  # churn moves n: bound the cache
                    self._cdf.clear()
                w = Popularity(zipf=acc.zipf).weights(n)
                cdf = self._cdf[n] = np.cumsum(w)
            out = np.searchsorted(cdf, rng.random(k), side="right")
            return np.minimum(out, n - 1)
        if acc.pattern == "scan":
            # cursor counts touches: `run` of them per page, then the next
            out = ((cursor[0] + np.arange(k)) // acc.run) % n
            cursor[0] = int((cursor[0] + k) % (n * acc.run))
            return out
        # hash: a bucket page, then `chain` node pages per lookup
        per = 1 + acc.chain
        ops = max(1, k // per)
        buckets = max(1, int(n * HASH_BUCKET_SHARE))
        out = rng.integers(n, size=(ops, per))
        out[:, 0] = rng.integers(buckets, size=ops)
        return out.reshape(-1)

    def _accessor(self, side: str, acc: Access, cpu: int, ready):
        kernel = self.kernel
        env = kernel.env
        yield ready
        rng = kernel.rng(f"{self.tag}.{side}.cpu{cpu}")
        quantum = kernel.quantum
        per_quantum = acc.rate * quantum / 1e9
        cursor = [0]
        c = kernel.metrics.counters
        misses = f"arena.{side}.stlb_misses"
        accesses = f"arena.{side}_accesses"
        faulted = f"arena.{side}.faulted_accesses"
        per_access = f"arena.{side}.stlb_misses_per_access"
        while True:
            k = int(rng.poisson(per_quantum)) if self.live.n else 0
            if not k:
                yield env.timeout(quantum)
                continue
            keys = self.live.keys[self._ranks(acc, rng, k, cursor)]
            stray = int(rng.binomial(len(keys), acc.stray)) if acc.stray else 0
            if side == "bpf":
                addrs, shifts, faults = yield from self._bpf_batch(
                    cpu, keys, stray, rng
                )
            else:
                addrs, shifts, faults = yield from self._user_batch(
                    cpu, keys, stray, rng
                )
            before = c["stlb.misses"]
            lost = kernel.executor.run(
                cpu,
                addrs,
                shifts,
                "d",
                len(keys) * acc.insns_per_access,
                owner="arena",
            )
            c[misses] += c["stlb.misses"] - before
            c[accesses] += len(addrs)
            c[faulted] += faults
            if c[accesses]:
                c[per_access] = round(c[misses] / c[accesses], 6)
            yield env.timeout(quantum + lost)

    def _arena_of(self, key: int):
        a = key >> 32
        return (None if self.closing[a] else self.arenas[a]), key & 0xFFFFFFFF

    def _stray_keys(self, rng, count: int) -> list[int]:
        out = []
        for _ in range(count):
            a = int(rng.integers(len(self.arenas)))
            arena = self.arenas[a]
            if arena is not None and arena.nr_pages and not self.closing[a]:
                out.append(a << 32 | int(rng.integers(arena.nr_pages)))
        return out

    def _bpf_batch(self, cpu: int, keys: np.ndarray, stray: int, rng):
        """Kernel-view addresses and page shifts for the touches; stray
        touches of unmapped pages take the kernel fault path first."""
        ids = keys >> 32
        pg = keys & 0xFFFFFFFF
        base = self.kbase[ids]
        keep = base != 0  # arenas being torn down drop out
        if not keep.all():
            ids, pg, base = ids[keep], pg[keep], base[keep]
        addrs = [base + (pg.astype(np.uint64) << np.uint64(PAGE_SHIFT))]
        st = self.kernel.arena_ops
        if type(st).kern_shifts is ArenaStrategy.kern_shifts:
            shifts = [np.full(len(pg), PAGE_SHIFT, dtype=np.uint8)]
        else:
            out = np.empty(len(pg), dtype=np.uint8)
            for a in np.unique(ids).tolist():
                sel = ids == a
                out[sel] = st.kern_shifts(self.arenas[a], pg[sel])
            shifts = [out]
        faults = 0
        for key in self._stray_keys(rng, stray):
            arena, pgoff = self._arena_of(key)
            if arena is None:
                continue
            mapped = (
                pgoff in arena.scratch
                or arena.strategy.backing_pfn(arena, pgoff) is not None
            )
            if not mapped:
                faults += 1
                mapped = yield from arena.kernel_fault(cpu, pgoff)
            if mapped:
                addrs.append(np.array([arena.kaddr(pgoff)], dtype=np.uint64))
                shifts.append(arena.strategy.kern_shifts(arena, np.array([pgoff])))
        return np.concatenate(addrs), np.concatenate(shifts), faults

    def _user_batch(self, cpu: int, keys: np.ndarray, stray: int, rng):
        """User-view addresses; a page not yet in the user page table is
        faulted in first (arena_vm_fault), a SIGSEGV drops the touch."""
        touched: list[int] = []
        faults = 0
        want = list(dict.fromkeys(keys.tolist())) + self._stray_keys(rng, stray)
        for key in want:
            arena, pgoff = self._arena_of(key)
            if arena is None:
                continue
            if pgoff not in arena.user:
                if key not in self.live.pos and not self._fresh(arena, pgoff):
                    continue  # freed meanwhile: the program no longer uses it
                faults += 1
                if (yield from arena.user_fault(cpu, pgoff)) is None:
                    continue
                self.live.add(key >> 32, pgoff, 1)
            touched.append(key)
        addrs = np.array(
            [
                self.arenas[k >> 32].uaddr(k & 0xFFFFFFFF)
                for k in touched
                if self.arenas[k >> 32] is not None
            ],
            dtype=np.uint64,
        )
        return addrs, np.full(len(addrs), 12, dtype=np.uint8), faults

    @staticmethod
    def _fresh(arena, pgoff: int) -> bool:
        """A stray user touch: allowed to fault a page in when it is not
        the remains of a freed live page (i.e. free in the range tree)."""
        return bool(arena.rt.free_in(pgoff, 1))
