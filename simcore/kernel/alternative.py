"""arch/x86/kernel/alternative.c: the text_poke family.

Writing into executable kernel memory without ever making it writable:

- ``__text_poke()`` maps the one or two target pages at ``poking_addr`` in a
  private mm (``poking_mm``) with non-global RW PTEs, switches to that mm with
  IRQs off, copies (or memsets), verifies, clears the PTEs, switches back and
  flushes the poking range *locally*. No IPI: "a temporary mm also allows to
  avoid TLB shootdowns" (20190426232303.28381-1-nadav.amit@gmail.com).
- ``text_poke_copy()`` / ``text_poke_set()`` hold ``text_mutex`` once and
  loop ``__text_poke`` over chunks of at most two pages (8 KiB).
- ``text_poke_bp_batch()`` patches live code with the INT3 protocol: INT3 on
  every site, sync, the tail bytes, sync, the first byte, sync. Each sync is
  ``on_each_cpu(do_sync_core)``: an IPI round to every CPU
  (cover.1560325897.git.bristot@redhat.com). A batch holds at most
  ``TP_VEC_MAX`` sites, one page of ``struct text_poke_loc``.

One ``__text_poke()`` (arch/x86/kernel/alternative.c, the temporary-mm
version of b3fd8e83ada0, v5.2, in every modelled era), step by step:

1. ``local_irq_save()``, ``get_locked_pte(poking_mm, poking_addr)``: the
   PTE lock, an uncontended atomic (``locks.atomic_uncontended_ns``);
2. ``set_pte_at()`` for the one or two pages (``kernel_costs.pte_write_ns``);
3. ``use_temporary_mm(poking_mm)``: a CR3 write (``flush.cr3_flush_cycles``).
   The previous poke's ``flush_tlb_mm_range()`` only advanced poking_mm's
   tlb_gen (the mm was no longer loaded), so this switch reloads CR3
   without NOFLUSH and the write below walks the page tables again: one
   4K walk of poking_mm's hot tables (the profile's walker);
4. the copy (or memset), then ``memcmp()`` verifying it: twice the bytes
   at the store bandwidth ``kernel_costs.page_zero_ns`` implies (an
   estimate: a copy streams about as fast as clear_page);
5. ``pte_clear()`` per page, ``unuse_temporary_mm()``: a second CR3 write;
6. ``flush_tlb_mm_range(poking_mm, ...)``: the tlb_gen increment, an
   atomic; no INVLPG, since poking_mm is not loaded any more (see 3).

The sync IPI's work on each CPU is the interrupt entry itself, whose IRET
serialises the core; how long each target takes to answer is the flush
model's (a busy, IRQs-off or idle target).

While a batch's INT3s are armed, from the first write to the last sync,
any other CPU that runs one of its sites traps: ``poke_int3_handler()``
finds the site (a bsearch of the batch), emulates the new instruction and
returns (``kernel_costs.int3_trap_ns`` each). How often a site runs is the
caller's (``site_rate``: runs per site per CPU per second); the hits are a
Poisson draw over the other CPUs and the armed time, counted as
``text_poke.int3_hits`` and charged as CPU time (``cpu.int3_ns``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.constants import PAGE

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# TP_VEC_MAX = PAGE_SIZE / sizeof(struct text_poke_loc) (24 bytes on x86-64)
TP_VEC_MAX = PAGE // 24
# JUMP_LABEL_NOP_SIZE on x86-64: a 5-byte jmp.d32 or nop
JUMP_LABEL_NOP_SIZE = 5


def charge_hits(metrics, rng, lam: float, cost_ns: float, counter: str, kind: str):
    """Poisson(``lam``) runs of patched or probed code that trap (or jump)
    on the CPUs running it: counted as ``counter``, ``cost_ns`` each of CPU
    time of ``kind``. Shared by the INT3 hits here and the kprobe hits of
    :mod:`simcore.kernel.kprobes`."""
    hits = int(rng.poisson(lam))
    if hits:
        metrics.inc(counter, hits)
        metrics.cpu_time(kind, int(hits * cost_ns))


class TextPoke:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        m = kernel.machine
        p = kernel.profile
        self.text_mutex = m.mutex("text_mutex")
        self.flush = m.flush
        ghz = p.clock_ghz.value
        self.switch_ns = 2 * p.flush.cr3_flush_cycles.value / ghz
        self.pte_ns = p.kernel_costs.pte_write_ns.value
        self.atomic_ns = p.locks.atomic_uncontended_ns.value
        # refilling poking_addr's translation: a 4K walk, one page of tables
        self.refill_ns = kernel.walk_4k_ns
        self.byte_ns = p.kernel_costs.page_zero_ns.value / PAGE
        trap = p.kernel_costs.int3_trap_ns
        self.int3_ns = trap.value if trap is not None else 0.0
        self._int3_rng = kernel.rng("text_poke.int3")

    def poke_ns(self, addr: int, nbytes: int) -> float:
        """One __text_poke() of ``nbytes`` (<= 2 pages) at ``addr``."""
        pages = 1 if (addr % PAGE) + nbytes <= PAGE else 2
        # PTE lock and tlb_gen bump, set + clear PTEs, two mm switches, the
        # refill walk, copy + memcmp verify (steps 1-6 of the module doc)
        return (
            2 * self.atomic_ns
            + 2 * pages * self.pte_ns
            + self.switch_ns
            + self.refill_ns
            + 2 * nbytes * self.byte_ns
        )

    def _chunks_ns(self, addr: int, nbytes: int) -> tuple[float, int]:
        ns, pokes, done = 0.0, 0, 0
        while done < nbytes:
            off = (addr + done) % PAGE
            n = min(2 * PAGE - off, nbytes - done)
            ns += self.poke_ns(addr + done, n)
            pokes += 1
            done += n
        return ns, pokes

    def text_poke_copy(self, cpu: int, addr: int, nbytes: int):
        """text_poke_copy()/text_poke_set(): one text_mutex hold, <=8K chunks."""
        ns, pokes = self._chunks_ns(addr, nbytes)
        yield from self.text_mutex.hold(cpu, ns)
        self.metrics.inc("text_poke.pokes", pokes)
        self.metrics.inc("tlb.local_flushes", pokes)

    text_poke_set = text_poke_copy

    def text_poke(self, cpu: int, addr: int, nbytes: int):
        """text_poke(): one small write, text_mutex taken by the caller path."""
        yield from self.text_poke_copy(cpu, addr, nbytes)

    def text_poke_each(
        self, cpu: int, addr: int, writes: int, nbytes: int, *, sync=False, held=False
    ):
        """``writes`` separate text_poke() calls of ``nbytes`` each under one
        text_mutex hold: write_relocate_add() applying relocations one at a
        time into ROX memory, perm_writable_finish() poking page by page.
        ``sync`` ends with text_poke_sync(), an IPI round to every CPU.
        ``held``: the caller holds text_mutex already."""
        ns = writes * self.poke_ns(addr, nbytes)
        if sync:
            ns += self.flush.ipi_round(cpu, 0.0, counter="text_poke.sync_ipis")
            self.metrics.inc("text_poke.sync_rounds")
        if held:
            yield self.env.timeout(int(ns))
        else:
            yield from self.text_mutex.hold(cpu, ns)
        self.metrics.inc("text_poke.pokes", writes)
        self.metrics.inc("tlb.local_flushes", writes)

    def flush_icache_range(self, cpu: int, addr: int, nbytes: int):
        """flush_icache_range(): nothing on x86, whose instruction fetch
        snoops stores (asm-generic/cacheflush.h's empty one); the
        generator exists so that callers run one path on every arch."""
        return
        yield

    def jump_label_update(self, cpu: int, sites: int, batched=None, site_rate=0.0):
        """__jump_label_update() of one key over ``sites`` sites: one
        text_poke_bp_batch() (v5.3+, every preset) or, unbatched, one
        text_poke_bp() per site."""
        if batched is None or batched:
            yield from self.text_poke_bp(cpu, sites, JUMP_LABEL_NOP_SIZE, site_rate)
            return
        for _ in range(sites):
            yield from self.text_poke_bp(cpu, 1, JUMP_LABEL_NOP_SIZE, site_rate)

    def kprobe_arm(self, cpu: int, *, held: bool = False):
        """arch_arm_kprobe() / arch_disarm_kprobe()
        (arch/x86/kernel/kprobes/core.c): text_poke() of the one-byte INT3
        (or the saved opcode back) under text_mutex, then text_poke_sync(),
        one IPI round to every CPU. ``held``: the caller holds text_mutex."""
        yield from self.text_poke_each(cpu, 0, 1, 1, sync=True, held=held)

    def ftrace_update(self, cpu: int, sites: int, site_rate: float = 0.0):
        """ftrace_replace_code() (arch/x86/kernel/ftrace.c, v5.6+):
        text_poke_queue() of each 5-byte call/nop, applied as
        text_poke_bp_batch()es of TP_VEC_MAX sites by text_poke_finish()."""
        yield from self.text_poke_bp(cpu, sites, JUMP_LABEL_NOP_SIZE, site_rate)

    def text_poke_bp(
        self,
        cpu: int,
        sites: int,
        insn_len: int = 5,
        site_rate: float = 0.0,
        *,
        held: bool = False,
    ):
        """text_poke_bp_batch() over ``sites`` live call sites, in batches;
        ``site_rate``: how often each site runs on each other CPU (per
        second), for the INT3 hits while a batch is armed. ``held``: the
        caller holds text_mutex (each batch then takes no lock)."""
        left = sites
        while left > 0:
            batch = min(left, TP_VEC_MAX)
            left -= batch
            if not held:
                ev = self.text_mutex.acquire(cpu)
                if ev is not None:
                    yield ev
            # INT3 on each site, then the tail, then the first byte
            pokes = batch * (3 if insn_len > 1 else 2)
            ns = batch * (self.poke_ns(0, 1) * 2 + self.poke_ns(0, insn_len - 1))
            for _ in range(3):
                ns += self.flush.ipi_round(cpu, 0.0, counter="text_poke.sync_ipis")
            self.metrics.inc("text_poke.sync_rounds", 3)
            self.metrics.inc("text_poke.pokes", pokes)
            if site_rate > 0 and self.int3_ns:
                self._int3_hits(batch * site_rate, ns)
            if held:
                yield self.env.timeout(int(ns))
                continue
            yield self.env.timeout(int(ns) + self.kernel.machine.uncontended_ns)
            self.text_mutex.release(cpu)

    def _int3_hits(self, rate: float, armed_ns: float) -> None:
        """poke_int3_handler() on the other CPUs while a batch is armed:
        Poisson(``rate`` per CPU per second over ``armed_ns``) hits."""
        lam = rate * (self.kernel.nr_cpus - 1) * armed_ns / 1e9
        charge_hits(
            self.metrics,
            self._int3_rng,
            lam,
            self.int3_ns,
            "text_poke.int3_hits",
            "int3",
        )
