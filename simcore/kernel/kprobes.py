"""kernel/kprobes.c with arch/x86/kernel/kprobes/{core,opt}.c and
arch/arm64/kernel/probes/kprobes.c: registering and unregistering a kprobe.

A kprobe off a function's entry (one at the ``__fentry__`` site goes
through ftrace, KPROBES_ON_FTRACE, and is not modelled here) copies the
probed instruction into an *instruction slot* to single-step it there:

- ``__get_insn_slot()`` (``kprobe_insn_slots``, under the cache's mutex)
  takes the first clean slot of a page on the cache's list; with none free
  it first collects garbage slots (``collect_garbage_slots()``), then
  allocates a page: ``alloc_insn_page()``, ``module_alloc(PAGE_SIZE)`` +
  ``set_memory_ro()``/``set_memory_x()`` before v6.10 (``set_memory_rox()``
  on x86 since), ``execmem_alloc(EXECMEM_KPROBES, PAGE_SIZE)`` since v6.10;
  here the strategy's ``alloc`` of kind ``kprobe`` and its ``finalize``
  (``alloc_insn_page()`` writes nothing into the page, so there is no
  ``write`` step);
- the slot is filled through the text-poke path because the page is
  already read-only: x86 ``arch_copy_kprobe()`` -> ``text_poke()`` of the
  copied instruction (63fef14fc98a, v4.17), the strategy's ``update``;
  arm64 ``arch_prepare_ss_slot()``: two ``aarch64_insn_patch_text_nosync()``
  (the instruction, then the single-step BRK);
- ``arch_arm_kprobe()`` writes the breakpoint (``text_poke.kprobe_arm``).

``unregister_kprobe()``: under ``kprobe_mutex`` the breakpoint comes out
(``__disarm_kprobe()``), then ``synchronize_rcu()`` and
``__unregister_kprobe_bottom()`` -> ``arch_remove_kprobe()`` ->
``free_insn_slot()``. x86 frees the slot *dirty* (``p->ainsn.boostable``;
taken here for every probe, since most instructions are boostable) and
``__free_insn_slot()`` collects dirty slots once there are more than a
page's worth (``collect_garbage_slots()``: a ``synchronize_rcu()``, then
``collect_one_slot()`` of each); arm64 frees it clean at once. A page left
with no slot in use is freed (``free_insn_page()``: ``execmem_free()``,
the strategy's ``free``, after a ``synchronize_rcu()`` with the cache mutex
held) unless it is the cache's last page, which ``collect_one_slot()``
keeps "so as not to have to set it up again".

Optimized kprobes (x86 CONFIG_OPTPROBES; arm64 has no HAVE_OPTPROBES, so
there every probe stays a BRK): ``try_to_optimize_kprobe()`` right after
arming prepares a detour buffer in a slot of the separate
``kprobe_optinsn_slots`` cache (same page mechanism, kind ``kprobe``),
written with ``text_poke()`` (``__arch_prepare_optimized_kprobe()``), and
queues the probe; ``kick_kprobe_optimizer()`` schedules
``kprobe_optimizer()`` OPTIMIZE_DELAY jiffies later, which under
``kprobe_mutex`` and ``text_mutex`` (so every other text poke waits for
it, grace period included): unoptimizes what was queued for it
(``arch_unoptimize_kprobe()``: INT3 and the displacement bytes back, two
``text_poke()`` + ``text_poke_sync()``, then ``arch_disarm_kprobe()``),
waits ``synchronize_rcu_tasks()``, replaces the INT3 of every queued probe
by a 5-byte jump (``arch_optimize_kprobes()``: one ``text_poke_bp()``
each), and frees the cleaned-up probes' two slots, both dirty
(``free_aggr_kprobe()``). Unregistering an optimized probe therefore only
queues it; a probe still waiting for the optimizer is dequeued and
disarmed directly.

While a probe is in place, every run of the probed instruction on any
CPU costs that CPU the probe's hit: an INT3 trap, the handler and the
boosted return while it is a breakpoint (``kernel_costs.int3_trap_ns``),
the detour's jump and call once optimized (``kernel_costs.optprobe_hit_ns``):
Documentation/trace/kprobes.rst's point of optprobes. How often a probed
instruction runs is the caller's (``site_rate``, per CPU per second); the
hits of each interval between two changes are a Poisson draw, counted as
``kprobes.hits`` and charged as CPU time (``cpu.kprobe_ns``). A profile
without these costs (the arm64 ones: no published figure) counts none.

Grace periods cost no CPU time; each is ``RCU_GP_NS`` of waiting (the
module loader's estimate). ``synchronize_rcu_tasks()`` is taken to be as
long: on a kernel without CONFIG_PREEMPTION it is ``synchronize_rcu()``
(the comment in ``kprobe_optimizer()``); the RCU Tasks grace period of a
preemptible kernel (HZ/10 sleeps and more) is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from simcore.constants import PAGE
from simcore.kernel.alternative import charge_hits
from simcore.kernel.arm64.patching import AARCH64_INSN_SIZE
from simcore.kernel.execmem import ExecAlloc
from simcore.kernel.module import RCU_GP_NS

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# x86: MAX_INSN_SIZE (16, arch/x86/include/asm/insn.h) bytes per slot,
# kprobe_opcode_t being u8 (asm/kprobes.h): PAGE_SIZE / 16 = 256 slots a page
X86_INSN_SLOT = 16
# arm64: MAX_INSN_SIZE 2 (arch/arm64/include/asm/kprobes.h) of u32
# kprobe_opcode_t (asm/probes.h): the instruction and the single-step BRK,
# 512 slots a page
ARM64_INSN_SLOT = 8
# Estimate: MAX_OPTINSN_SIZE = optprobe_template_end - optprobe_template_entry
# (the register saves, the call to optimized_callback and the restores:
# ~160 bytes of arch/x86/kernel/kprobes/opt.c's template) + MAX_OPTIMIZED_LENGTH
# (MAX_INSN_SIZE + DISP32_SIZE = 20) + JMP32_INSN_SIZE (5): 185 bytes,
# 22 detour buffers a page
X86_OPTINSN_SLOT = 160 + 20 + 5
# JMP32_INSN_SIZE and DISP32_SIZE (arch/x86/include/asm/text-patching.h)
JMP32_INSN_SIZE = 5
DISP32_SIZE = 4
# OPTIMIZE_DELAY (kernel/kprobes.c): 5 jiffies; HZ=1000 assumed, as the
# loader's RCU estimate assumes (distributions build 250 or 1000)
OPTIMIZE_DELAY_NS = 5 * 1_000_000


@dataclass(eq=False)
class InsnPage:
    """``struct kprobe_insn_page``: one executable page of slots."""

    obj: ExecAlloc
    free: list[int]  # clean slot indices, taken from the end
    nused: int = 1  # SLOT_USED + SLOT_DIRTY
    dirty: list[int] = field(default_factory=list)


@dataclass(eq=False)
class Slot:
    page: InsnPage
    idx: int


class InsnCache:
    """``struct kprobe_insn_cache``: pages of fixed-size slots."""

    def __init__(self, kernel: Kernel, name: str, slot_bytes: int) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.name = name
        self.per_page = PAGE // slot_bytes  # slots_per_page()
        self.slot_bytes = slot_bytes
        self.pages: list[InsnPage] = []
        self.nr_garbage = 0

    @cached_property
    def mutex(self):
        """The cache's mutex, made on first use (a cache never used reports
        no lock)."""
        return self.kernel.machine.mutex(f"kprobe_{self.name}_slots")

    def get(self, cpu: int):
        """__get_insn_slot(): a Slot, or None without memory."""
        yield from self.mutex.lock(cpu)
        slot = self._find()
        if slot is None and self.nr_garbage:
            yield from self._collect_garbage(cpu)
            slot = self._find()
        if slot is None:
            slot = yield from self._new_page(cpu)
        self.mutex.release(cpu)
        return slot

    def _find(self) -> Slot | None:
        for page in self.pages:
            if page.free:
                page.nused += 1
                return Slot(page, page.free.pop())
        return None

    def _new_page(self, cpu: int):
        """kmalloc() of the kprobe_insn_page, c->alloc(): alloc_insn_page()
        (or alloc_optinsn_page(), the same), slot 0 taken."""
        st = self.kernel.exec_alloc
        obj = yield from st.alloc(cpu, PAGE, "kprobe")
        if obj is None:
            self.metrics.inc("kprobes.slot_failures")
            return None
        yield from st.finalize(cpu, obj)
        page = InsnPage(obj, list(range(self.per_page - 1, 0, -1)))
        self.pages.insert(0, page)  # list_add_rcu(): at the head
        self.metrics.inc(f"kprobes.{self.name}_pages")
        return Slot(page, 0)

    def put(self, cpu: int, slot: Slot, dirty: bool):
        """__free_insn_slot(): mark the slot dirty (collected in bulk past a
        page's worth) or collect it at once."""
        yield from self.mutex.lock(cpu)
        if dirty:
            slot.page.dirty.append(slot.idx)
            self.nr_garbage += 1
            if self.nr_garbage > self.per_page:
                yield from self._collect_garbage(cpu)
        else:
            yield from self._collect_one(cpu, slot.page, slot.idx)
        self.mutex.release(cpu)

    def _collect_garbage(self, cpu: int):
        """collect_garbage_slots(): synchronize_rcu(), then every dirty
        slot collected."""
        yield self.env.timeout(RCU_GP_NS)
        for page in list(self.pages):
            dirty, page.dirty = page.dirty, []
            for idx in dirty:
                emptied = yield from self._collect_one(cpu, page, idx)
                if emptied:
                    break
        self.nr_garbage = 0

    def _collect_one(self, cpu: int, page: InsnPage, idx: int):
        """collect_one_slot(): the slot clean; a page left unused is freed
        unless it is the last one. True when the page emptied."""
        page.free.append(idx)
        page.nused -= 1
        if page.nused:
            return False
        if len(self.pages) > 1:
            self.pages.remove(page)  # list_del_rcu(), synchronize_rcu()
            yield self.env.timeout(RCU_GP_NS)
            yield from self.kernel.exec_alloc.free(cpu, page.obj)
            self.metrics.inc(f"kprobes.{self.name}_pages", -1)
        return True


@dataclass(eq=False)
class Kprobe:
    """A registered probe: its slot, its detour buffer when optimizable,
    and where it stands: ``armed``, ``queued`` (for the optimizer),
    ``optimized``, ``unoptimizing`` or ``gone``."""

    slot: Slot
    opt_slot: Slot | None = None
    state: str = "armed"
    site_rate: float = 0.0  # runs of the probed instruction per CPU per s
    hit: str | None = None  # what a run costs now: "int3", "jump" or nothing


class Kprobes:
    """register_kprobe() / unregister_kprobe() and the optimizer."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.kprobe_mutex = kernel.machine.mutex("kprobe_mutex")
        self.x86 = kernel.profile.arch != "arm64"
        # HAVE_OPTPROBES: x86 (and 32-bit arm, powerpc), never arm64
        self.optprobes = self.x86
        self.insn = InsnCache(
            kernel, "insn", X86_INSN_SLOT if self.x86 else ARM64_INSN_SLOT
        )
        self.optinsn = InsnCache(kernel, "optinsn", X86_OPTINSN_SLOT)
        self.optimizing: list[Kprobe] = []
        self.unoptimizing: list[Kprobe] = []
        self._work_pending = False
        c = kernel.profile.kernel_costs
        int3, jump = c.int3_trap_ns, c.optprobe_hit_ns
        self.hit_ns = {
            "int3": int3.value if int3 is not None else None,
            "jump": jump.value if jump is not None else None,
        }
        self._rates = {"int3": 0.0, "jump": 0.0}  # summed site rates
        self._since = 0  # when the rates last changed
        self._rng = kernel.rng("kprobes.hits")

    # -- register_kprobe() ---------------------------------------------------
    def register(self, cpu: int, optimize: bool = False, site_rate: float = 0.0):
        """register_kprobe(): the slot, its copy, the breakpoint; with
        ``optimize`` (and OPTPROBES) the detour buffer and the optimizer
        kicked. ``site_rate``: runs of the probed instruction per CPU per
        second. Returns the Kprobe, or None without memory."""
        env = self.env
        t0 = env.now
        mutex = self.kprobe_mutex
        yield from mutex.lock(cpu)
        # prepare_kprobe() -> arch_prepare_kprobe()
        slot = yield from self.insn.get(cpu)
        if slot is None:
            mutex.release(cpu)
            return None
        yield from self._fill(cpu, slot)
        # arm_kprobe() -> __arm_kprobe() -> arch_arm_kprobe()
        yield from self.kernel.text_poke.kprobe_arm(cpu)
        self.metrics.inc("kprobes.arms")
        kp = Kprobe(slot, site_rate=site_rate)
        self._costs(kp, "int3")
        if optimize and self.optprobes:
            yield from self._try_to_optimize(cpu, kp)
        mutex.release(cpu)
        self.metrics.latency("kprobe_arm", env.now - t0)
        return kp

    def _fill(self, cpu: int, slot: Slot):
        """arch_copy_kprobe() (x86: text_poke() of the slot, through the
        strategy) or arch_prepare_ss_slot() (arm64: two instruction
        writes through the fixmap, no IPI)."""
        if self.x86:
            yield from self.kernel.exec_alloc.update(
                cpu, slot.page.obj, self.insn.slot_bytes
            )
            return
        tp = self.kernel.text_poke
        addr = slot.page.obj.addr + slot.idx * ARM64_INSN_SLOT
        yield from tp.text_poke(cpu, addr, AARCH64_INSN_SIZE)
        yield from tp.text_poke(cpu, addr + AARCH64_INSN_SIZE, AARCH64_INSN_SIZE)

    def _try_to_optimize(self, cpu: int, kp: Kprobe):
        """try_to_optimize_kprobe(): alloc_aggr_kprobe() ->
        arch_prepare_optimized_kprobe() (get_optinsn_slot(), text_poke()
        of the detour buffer), then optimize_kprobe() queues it."""
        slot = yield from self.optinsn.get(cpu)
        if slot is None:
            return  # "If failed to setup optimizing, fallback to kprobe"
        st = self.kernel.exec_alloc
        yield from st.update(cpu, slot.page.obj, self.optinsn.slot_bytes)
        kp.opt_slot = slot
        kp.state = "queued"
        self.optimizing.append(kp)
        self._kick(cpu)

    # -- unregister_kprobe() -------------------------------------------------
    def unregister(self, cpu: int, kp: Kprobe):
        """unregister_kprobe(): __unregister_kprobe_top() under
        ``kprobe_mutex``, synchronize_rcu(), __unregister_kprobe_bottom()."""
        env = self.env
        t0 = env.now
        mutex = self.kprobe_mutex
        yield from mutex.lock(cpu)
        queued = False
        if kp.state == "queued":
            # unoptimize_kprobe(): dequeued from optimizing_list, then
            # __disarm_kprobe()'s arch_disarm_kprobe()
            self.optimizing.remove(kp)
            yield from self._disarm(cpu, kp)
        elif kp.state == "optimized":
            # unoptimize_kprobe(): onto unoptimizing_list; the optimizer
            # restores the breakpoint, disarms and frees both slots
            kp.state = "unoptimizing"
            self.unoptimizing.append(kp)
            self._kick(cpu)
            queued = True
        else:
            yield from self._disarm(cpu, kp)
        mutex.release(cpu)
        if not queued:
            kp.state = "gone"
        # unregister_kprobes(): synchronize_rcu() for every probe, an
        # optimized one too (the optimizer frees its slots later)
        yield env.timeout(RCU_GP_NS)
        if not queued:
            # arch_remove_kprobe() (and, for a dequeued optimizable probe,
            # free_aggr_kprobe()'s arch_remove_optimized_kprobe())
            yield from self.insn.put(cpu, kp.slot, dirty=self.x86)
            if kp.opt_slot is not None:
                yield from self.optinsn.put(cpu, kp.opt_slot, dirty=True)
                kp.opt_slot = None
        self.metrics.latency("kprobe_disarm", env.now - t0)

    def _disarm(self, cpu: int, kp: Kprobe, *, held: bool = False):
        """arch_disarm_kprobe(): the probed instruction's first byte (or
        instruction) back, as arch_arm_kprobe() wrote the breakpoint
        (``held``: the caller holds text_mutex)."""
        yield from self.kernel.text_poke.kprobe_arm(cpu, held=held)
        self._costs(kp, None)
        self.metrics.inc("kprobes.disarms")

    # -- what the probes cost the CPUs that run them ---------------------------
    def _costs(self, kp: Kprobe, hit: str | None) -> None:
        """``kp`` now costs each run ``hit``: the hits so far are charged
        at the rates that held until now."""
        if kp.hit == hit:
            return
        self.accrue()
        if kp.hit is not None:
            self._rates[kp.hit] -= kp.site_rate
        if hit is not None:
            self._rates[hit] += kp.site_rate
        kp.hit = hit

    def accrue(self) -> None:
        """Charge the hits since the last change: Poisson(rate x CPUs x
        time) of each kind, at its cost (none where the profile has no
        cost)."""
        now = self.env.now
        dt, self._since = now - self._since, now
        for kind, rate in self._rates.items():
            cost = self.hit_ns[kind]
            if rate <= 0 or dt <= 0 or cost is None:
                continue
            lam = rate * self.kernel.nr_cpus * dt / 1e9
            charge_hits(self.metrics, self._rng, lam, cost, "kprobes.hits", "kprobe")

    # -- kprobe_optimizer() --------------------------------------------------
    def _kick(self, cpu: int) -> None:
        """kick_kprobe_optimizer(): schedule_delayed_work(), a no-op while
        the work is pending."""
        if not self._work_pending:
            self._work_pending = True
            self.env.process(self._optimizer(cpu))

    def _optimizer(self, cpu: int):
        """kprobe_optimizer(), after OPTIMIZE_DELAY: steps 1-5 under
        ``kprobe_mutex``, steps 1-4 also under ``text_mutex``, taken once
        after kprobe_mutex and cpus_read_lock() (f1c6ece23729 'kprobes:
        Fix potential deadlock in kprobe_optimizer()', v5.3, before every
        preset): every other text_poke user waits out the optimizer, its
        synchronize_rcu_tasks() and step 4's frees included (a slot page
        freed there goes back through execmem_free(), which takes no
        text_mutex: v6.17's ROX cache fills it through a temporary RW
        remap, see execmem_rox)."""
        env = self.env
        yield env.timeout(OPTIMIZE_DELAY_NS)
        t0 = env.now
        mutex = self.kprobe_mutex
        yield from mutex.lock(cpu)
        self._work_pending = False
        tp = self.kernel.text_poke
        yield from tp.text_mutex.lock(cpu)
        # Step 1: do_unoptimize_kprobes()
        cleaned, self.unoptimizing = self.unoptimizing, []
        for kp in cleaned:
            # arch_unoptimize_kprobe(): INT3, sync, the 4 bytes back, sync
            yield from tp.text_poke_each(cpu, 0, 1, 1, sync=True, held=True)
            self._costs(kp, "int3")
            yield from tp.text_poke_each(cpu, 0, 1, DISP32_SIZE, sync=True, held=True)
            yield from self._disarm(cpu, kp, held=True)
        # Step 2: synchronize_rcu_tasks()
        yield env.timeout(RCU_GP_NS)
        # Step 3: do_optimize_kprobes() -> arch_optimize_kprobes()
        ready, self.optimizing = self.optimizing, []
        for kp in ready:
            yield from tp.text_poke_bp(cpu, 1, JMP32_INSN_SIZE, held=True)
            self._costs(kp, "jump")
            kp.state = "optimized"
            self.metrics.inc("kprobes.optimized")
        # Step 4: do_free_cleaned_kprobes() -> free_aggr_kprobe()
        for kp in cleaned:
            kp.state = "gone"
            if kp.opt_slot is not None:
                yield from self.optinsn.put(cpu, kp.opt_slot, dirty=True)
                kp.opt_slot = None
            yield from self.insn.put(cpu, kp.slot, dirty=True)
        tp.text_mutex.release(cpu)
        # Step 5: kick the optimizer again if needed
        if self.optimizing or self.unoptimizing:
            self._kick(cpu)
        mutex.release(cpu)
        self.metrics.inc("kprobes.optimizer_runs")
        self.metrics.latency("kprobe_optimizer", env.now - t0)
