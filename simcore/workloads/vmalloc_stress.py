"""``vmalloc_stress``: lib/test_vmalloc.c, with its module parameters.

``nr_threads`` workers (kthreads ``vmalloc_test/N``, worker ``i`` on CPU
``i mod cpus``) are released together; each runs the tests selected by
``run_test_mask`` (in array order with ``sequential_test_order``, else in
its own shuffled order), every test ``test_repeat_count`` times, and times
each test with ktime around its repeats. When every worker is done the
kernel log (``dmesg.txt`` in the results) gets test_vmalloc's own lines::

    Summary: fix_size_alloc_test passed: 1 failed: 0 repeat: 1 loops: 1000000 avg: 1104 usec
    All test took worker0=2760123456 cycles

``avg`` is the time of all ``test_loop_count`` loops of a test, averaged
over repeats. Metrics: ``test_vmalloc.<test>.avg_usec`` (mean over
workers), ``test_vmalloc.<test>.loop_ns`` (that divided by the loops),
``.passed``/``.failed``, and ``workload.vmalloc_stress.loops``. If the
simulation ends first, the workers that finished are reported and
``test_vmalloc.workers_unfinished`` counts the others.

Parameters as the module takes them, except where noted: the module's
``nr_threads`` defaults to 1, here to one worker per CPU, which is what
test_vmalloc.sh's stress mode passes (``nr_threads=$NUM_CPUS``);
``run_test_mask`` defaults to 1 (fix_size alone), where recent kernels run
1|2|4. Workers sharing a CPU take turns every ``SLICE_NS`` at loop
boundaries. Simulator extensions: ``max_pages`` (sizes of fix_size and
vm_map_ram drawn from ``nr_pages..max_pages``), ``think`` (a pause after
each loop), ``setup_scale`` (see :mod:`simcore.workloads.vmalloc_cases`)
and ``vmallocinfo`` (a /proc/vmallocinfo capture whose areas are busy, or
for "unpurged" lines lazily freed, from the start: what ``kernel.vmallocinfo``
does for any workload, seeded when this one starts). Older keys still
read: ``cpus`` (nr_threads), ``loops`` (test_loop_count), ``size``
(nr_pages in bytes), ``vm_map_ram: true`` (run_test_mask 1024).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import simpy
from pydantic import Field, model_validator

from simcore.constants import PAGE
from simcore.kernel.printk import printk
from simcore.strict import Strict
from simcore.units import Duration, Size
from simcore.workloads.captures import capture_path
from simcore.workloads.vmalloc_cases import CASES, UNMODELLED

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DESCRIPTION = "lib/test_vmalloc.c: its test cases and parameters, on N workers"

# estimate: CFS gives each of two runnable tasks about half of its 6 ms
# sched_latency before switching
SLICE_NS = 3_000_000
MODELLED_MASK = sum(c.bit for c in CASES)
# random draws are taken from numpy in blocks, not one call per loop
_DRAW_BLOCK = 1024


class VmallocStress(Strict):
    # fields naming capture files, whose contents go into the config hash
    CAPTURES: ClassVar[tuple[str, ...]] = ("vmallocinfo",)

    type: Literal["vmalloc_stress"]
    run_test_mask: int | None = Field(
        default=None, ge=1, lt=1 << 13, description="tests to run (default 1)"
    )
    nr_threads: int | None = Field(
        default=None, ge=1, le=65535, description="workers (default: one per CPU)"
    )
    test_loop_count: int = Field(default=1_000_000, ge=1)
    test_repeat_count: int = Field(default=1, ge=1)
    nr_pages: int = Field(default=1, ge=1, le=1 << 20)
    use_huge: bool = Field(default=False, description="vmalloc_huge in fix_size")
    sequential_test_order: bool = False
    max_pages: int | None = Field(default=None, ge=1, le=1 << 20)
    think: Duration = Field(default="0ns", ge=0, description="pause after each loop")
    setup_scale: float = Field(default=1.0, gt=0, le=1)
    vmallocinfo: str | None = Field(
        default=None, description="a /proc/vmallocinfo capture to seed busy areas"
    )
    # older spellings, folded into the fields above (so never written out)
    cpus: int | None = Field(
        default=None, ge=1, exclude=True, description="same as nr_threads"
    )
    loops: int | None = Field(
        default=None, ge=1, exclude=True, description="same as test_loop_count"
    )
    size: Size | None = Field(
        default=None, gt=0, exclude=True, description="nr_pages in bytes"
    )
    vm_map_ram: bool = Field(
        default=False, exclude=True, description="same as run_test_mask: 1024"
    )

    @model_validator(mode="after")
    def _normalise(self) -> VmallocStress:
        given = self.model_fields_set
        if self.cpus is not None:
            if "nr_threads" in given:
                raise ValueError("give nr_threads or cpus, not both")
            self.nr_threads, self.cpus = self.cpus, None
        if self.loops is not None:
            if "test_loop_count" in given:
                raise ValueError("give test_loop_count or loops, not both")
            self.test_loop_count, self.loops = self.loops, None
        if self.size is not None:
            if "nr_pages" in given:
                raise ValueError("give nr_pages or size, not both")
            self.nr_pages, self.size = -(-self.size // PAGE), None
        if self.vm_map_ram:
            if self.run_test_mask not in (None, 1 << 10):
                raise ValueError("vm_map_ram: true is run_test_mask: 1024; give one")
            self.run_test_mask, self.vm_map_ram = 1 << 10, False
        if self.run_test_mask is None:
            self.run_test_mask = 1
        if self.max_pages is not None and self.max_pages < self.nr_pages:
            raise ValueError("max_pages must be at least nr_pages")
        skipped = [n for bit, n in UNMODELLED.items() if self.run_test_mask & bit]
        if skipped:
            raise ValueError(
                f"run_test_mask selects tests this simulator does not model: "
                f"{', '.join(skipped)} (modelled bits: {MODELLED_MASK})"
            )
        return self

    def start(self, kernel: Kernel, index: int) -> None:
        if self.vmallocinfo:
            from simcore.kernel.vmallocinfo import load_vmallocinfo

            path = capture_path(kernel, self.vmallocinfo)
            kernel.vmalloc.seed_vmallocinfo(load_vmallocinfo(path), file=str(path))
        _Driver(self, kernel, index).start()


class Worker:
    """One vmalloc_test/N kthread: its CPU, its random stream, its results."""

    def __init__(self, drv: _Driver, idx: int, cpu: int) -> None:
        kernel = drv.kernel
        self.kernel = kernel
        self.env = kernel.env
        self.vm = kernel.vmalloc
        self.cfg = drv.cfg
        self.idx = idx
        self.cpu = cpu
        self.rng = kernel.rng(f"{drv.tag}.worker{idx}")
        self._touch = kernel.executor.touch
        self.slot = drv.slots[cpu] if drv.slots else None
        self.req = None
        self.slice_start = 0
        self.results: dict[str, tuple[int, int, int]] = {}  # passed, failed, usec
        self.cycles: int | None = None
        self._u = iter(())
        self._loops = drv.loops_key

    def write(self, addr: int, shift: int) -> int:
        """The store to byte 0 of a mapping, through this CPU's dTLB: the
        ns it costs (at least 1, the store itself)."""
        return max(1, self._touch(self.cpu, addr, shift, "d"))

    def draw(self, lo: int, hi: int) -> int:
        """A uniform integer in [lo, hi]."""
        try:
            u = next(self._u)
        except StopIteration:
            self._u = iter(self.rng.random(_DRAW_BLOCK).tolist())
            u = next(self._u)
        return lo + int(u * (hi - lo + 1))

    def scaled(self, n: int) -> int:
        return max(1, int(n * self.cfg.setup_scale))

    def loop_done(self):
        self.kernel.metrics.counters[self._loops] += 1
        if self.cfg.think:
            yield self.env.timeout(self.cfg.think)
        if self.slot is not None and self.env.now - self.slice_start >= SLICE_NS:
            yield from self.yield_cpu()

    def take_cpu(self):
        if self.slot is not None:
            self.req = self.slot.request()
            yield self.req
            self.slice_start = self.env.now

    def yield_cpu(self):
        """cond_resched(): give the CPU to a waiting worker, queue again."""
        if self.slot.queue:
            self.slot.release(self.req)
            yield from self.take_cpu()
        else:
            self.slice_start = self.env.now

    def run(self, done: simpy.Event):
        cfg = self.cfg
        env = self.env
        cases = [c for c in CASES if cfg.run_test_mask & c.bit]
        if not cfg.sequential_test_order:
            # shuffle_array(): j = get_random_u32_below(i) for i = n-1 .. 1
            for i in range(len(cases) - 1, 0, -1):
                j = int(self.rng.integers(i))
                cases[i], cases[j] = cases[j], cases[i]
        yield from self.take_cpu()
        t0 = env.now
        for case in cases:
            kt = env.now
            passed = failed = 0
            for _ in range(cfg.test_repeat_count):
                rv = yield from case.run(self)
                if rv == 0:
                    passed += 1
                else:
                    failed += 1
            usec = (env.now - kt) // 1000 // cfg.test_repeat_count
            self.results[case.name] = (passed, failed, usec)
        self.cycles = int((env.now - t0) * self.kernel.profile.clock_ghz.value)
        if self.slot is not None:
            self.slot.release(self.req)
        done.succeed()


class _Driver:
    """do_concurrent_test(): start the workers, wait, print the summary."""

    def __init__(self, cfg: VmallocStress, kernel: Kernel, index: int) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.tag = f"workload.{index}.vmalloc_stress"
        self.loops_key = "workload.vmalloc_stress.loops"
        n = cfg.nr_threads or kernel.nr_cpus
        self.slots = (
            [simpy.Resource(kernel.env, capacity=1) for _ in range(kernel.nr_cpus)]
            if n > kernel.nr_cpus
            else None
        )
        self.workers = [Worker(self, i, i % kernel.nr_cpus) for i in range(n)]

    def start(self) -> None:
        env = self.kernel.env
        done = [env.event() for _ in self.workers]
        for w, ev in zip(self.workers, done, strict=True):
            env.process(w.run(ev))
        env.process(self._report(env.all_of(done)))

    def _report(self, all_done):
        env, kernel = self.kernel.env, self.kernel
        end = max(0, kernel.ctx.duration - 1 - env.now)
        yield env.any_of([all_done, env.timeout(end)])
        cfg = self.cfg
        per_test: dict[str, list[tuple[int, int, int]]] = {}
        for w in self.workers:
            for case in CASES:
                res = w.results.get(case.name)
                if res is None:
                    continue
                per_test.setdefault(case.name, []).append(res)
                passed, failed, usec = res
                printk(
                    kernel.ctx,
                    f"Summary: {case.name} passed: {passed} failed: {failed} "
                    f"repeat: {cfg.test_repeat_count} loops: {cfg.test_loop_count} "
                    f"avg: {usec} usec",
                )
            if w.cycles is not None:
                printk(kernel.ctx, f"All test took worker{w.idx}={w.cycles} cycles")
        unfinished = sum(1 for w in self.workers if w.cycles is None)
        if unfinished:
            printk(
                kernel.ctx,
                f"vmalloc_test: {unfinished} of {len(self.workers)} workers still "
                "running when the simulation ended",
            )
        c = kernel.metrics.counters
        c["test_vmalloc.workers_unfinished"] = unfinished
        for name, rows in per_test.items():
            avg = sum(r[2] for r in rows) / len(rows)
            c[f"test_vmalloc.{name}.avg_usec"] = round(avg, 3)
            c[f"test_vmalloc.{name}.passed"] = sum(r[0] for r in rows)
            c[f"test_vmalloc.{name}.failed"] = sum(r[1] for r in rows)
            if name != "align_shift_alloc_test":
                c[f"test_vmalloc.{name}.loop_ns"] = round(
                    avg * 1000 / cfg.test_loop_count, 3
                )
