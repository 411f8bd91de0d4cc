"""arch/arm64/kernel/patching.c (and jump_label.c): live text on arm64.

arm64 writes kernel text through a fixmap alias, never through the text's
own (read-only) mapping, and needs no breakpoint protocol: a branch and a
NOP are each one 32-bit instruction, which the architecture lets another
CPU fetch while it changes (``aarch64_insn_hotpatch_safe()``).

- ``__aarch64_insn_write()`` / ``__text_poke()`` (the loop behind
  ``aarch64_insn_copy()`` / ``aarch64_insn_set()``): under ``patch_lock``
  (a raw spinlock, IRQs off), per page: ``patch_map()`` finds the page
  (``vmalloc_to_page()`` for module and BPF text: a walk) and installs it
  at ``FIX_TEXT_POKE0`` (``set_fixmap_offset()``: one PTE), the copy,
  ``patch_unmap()``: ``clear_fixmap()`` clears the PTE and
  ``flush_tlb_kernel_range()`` of that one page, a TLBI VAALE1IS broadcast
  plus DSB ISH (the flush model's ``broadcast``);
- ``aarch64_insn_patch_text_nosync()``: one instruction written so, then
  ``caches_clean_inval_pou()`` of it;
- ``aarch64_insn_copy()`` / ``aarch64_insn_set()`` (``bpf_arch_text_copy()``
  / ``bpf_arch_text_invalidate()``): the page loop above, then
  ``flush_icache_range()`` of the whole range, which is
  ``caches_clean_inval_pou()`` followed by ``kick_all_cpus_sync()``: an
  IPI to every other CPU, waited for, so that each takes a context
  synchronisation event before it runs the new code;
- ``aarch64_insn_patch_text()``: several instructions at once, under
  ``stop_machine()``: every CPU runs ``aarch64_insn_patch_text_cb()``, the
  first to arrive patches, the others spin on an atomic counter and then
  ISB (:meth:`Arm64Patching.stop_machine_ns`);
- jump labels: ``arch_jump_label_transform()`` is one
  ``aarch64_insn_patch_text_nosync()`` per site, no IPI (f6cc0c501649);
  from v6.11 (cfb00a357864, ``kernel.jump_label_batch``) the sites are
  patched the same way and ``arch_jump_label_transform_apply()`` ends the
  key with one ``kick_all_cpus_sync()``; ``bpf_arch_text_poke()`` (v6.0,
  b2ad54e1533e) is one ``aarch64_insn_patch_text_nosync()``;
- ``flush_icache_range()``: ``caches_clean_inval_pou()`` then
  ``kick_all_cpus_sync()``; the JIT's ``bpf_flush_icache()`` after every
  load and ``flush_module_icache()`` per module memory region.

``caches_clean_inval_pou()`` (arch/arm64/mm/cache.S): unless CTR_EL0.IDC
(``cpu.ctr_idc``), DC CVAU per D-cache line, DSB ISH; unless CTR_EL0.DIC
(``cpu.ctr_dic``), IC IVAU per I-cache line, DSB ISH; then ISB. With both
bits set (the Neoverse cores) that is a DSB ISHST and an ISB, priced as
nothing: Neoverse N1 erratum 1542419 hides DIC from user space only, the
kernel keeps ARM64_HAS_CACHE_DIC and relies on kick_all_cpus_sync()
(05460849c3b5, v5.5). DC CVAU and
IC IVAU are broadcast in the inner-shareable domain (DVM messages, like a
TLBI ...IS), so each line is priced like one broadcast TLBI
(``flush.broadcast_per_page_ns``) and each DSB ISH like a broadcast's sync
(``flush.broadcast_sync_ns``): an estimate resting on those two.

The methods keep the names of the x86 interface the strategies call
(``text_poke_copy``, ``text_poke_bp``, ...), each saying what arm64 runs
in its place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.constants import PAGE

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

AARCH64_INSN_SIZE = 4
CACHE_LINE = 64  # CTR_EL0.DminLine / IminLine on the Neoverse cores: 64 B
# FIX_TEXT_POKE0's page: a fixmap slot below FIXADDR_TOP (arm64 48-bit VA);
# its flushes go to an address no TLB model holds, as they do on hardware
FIXMAP_POKE = 0xFFFFFBFFFE800000


class Arm64Patching:
    """Text patching on arm64 (see the module doc)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        m = kernel.machine
        p = kernel.profile
        self.flush = m.flush
        self.text_mutex = m.mutex("text_mutex")
        self.patch_lock = m.spinlock("patch_lock")
        self.pte_ns = p.kernel_costs.pte_write_ns.value
        # set_fixmap_offset() writes a valid PTE: its barriers are paid per
        # PTE before v6.16 or as the batch's close after it; the clear writes
        # an invalid one, which never had them
        pt = kernel.pagetables
        self.set_pte_ns = pt.set_ns + pt.batch_ns
        self.byte_ns = p.kernel_costs.page_zero_ns.value / PAGE
        # vmalloc_to_page(): a walk of init_mm's hot tables
        self.walk_ns = kernel.walk_4k_ns
        f = p.flush
        self.line_ns = f.broadcast_per_page_ns.value
        self.dsb_ns = f.broadcast_sync_ns.value
        cpu = p.cpu
        self.idc = bool(cpu.ctr_idc and cpu.ctr_idc.value)
        self.dic = bool(cpu.ctr_dic and cpu.ctr_dic.value)
        self.batch = bool(kernel.knobs.jump_label_batch)
        self.nr_cpus = kernel.nr_cpus
        self.c2c_ns = m.topo.c2c_same_llc_ns
        self.wakeup_ns = p.locks.mutex_wakeup_ns.value

    # -- steps ---------------------------------------------------------------------
    def caches_clean_inval_pou_ns(self, nbytes: int) -> float:
        """caches_clean_inval_pou() over ``nbytes``: the D-cache clean and
        I-cache invalidate by line that CTR_EL0 does not waive, then ISB."""
        lines = max(1, -(-nbytes // CACHE_LINE))
        ns = 0.0
        if not self.idc:
            ns += lines * self.line_ns + self.dsb_ns
        if not self.dic:
            ns += lines * self.line_ns + self.dsb_ns
        return ns

    def _write_pages(self, cpu: int, addr: int, nbytes: int) -> tuple[float, int]:
        """The page loop of __text_poke(): per page map, copy, unmap with
        its broadcast TLBI. Returns (ns, pages)."""
        ns, pages, done = 0.0, 0, 0
        while done < nbytes:
            n = min(PAGE - (addr + done) % PAGE, nbytes - done)
            ns += self.walk_ns + self.set_pte_ns + self.pte_ns + n * self.byte_ns
            ns += self.flush.kernel_range(cpu, FIXMAP_POKE, FIXMAP_POKE + PAGE)
            pages += 1
            done += n
        return ns, pages

    def kick_all_cpus_sync_ns(self, cpu: int) -> float:
        """kick_all_cpus_sync(): smp_call_function() of a no-op to every
        other CPU, waited for."""
        self.metrics.inc("text_poke.sync_rounds")
        return self.flush.ipi_round(cpu, 0.0, counter="text_poke.sync_ipis")

    def stop_machine_ns(self, cpu: int) -> float:
        """stop_machine(): wake every CPU's stopper thread (an IPI round and
        a context switch, priced as a sleeping mutex hand-off), then the
        four multi_cpu_stop() states, each ended by every CPU's atomic
        decrement of one shared counter: one cache-line transfer each, in
        turn. An estimate built from the profile's own costs."""
        self.metrics.inc("text_poke.stop_machine")
        wake = self.flush.ipi_round(cpu, 0.0, counter="text_poke.sync_ipis")
        return wake + self.wakeup_ns + 4 * self.nr_cpus * self.c2c_ns

    # -- the interface the strategies call ------------------------------------------
    def text_poke_copy(self, cpu: int, addr: int, nbytes: int):
        """aarch64_insn_copy() (bpf_arch_text_copy()): the page loop under
        patch_lock, then flush_icache_range() with kick_all_cpus_sync()."""
        ns, pages = self._write_pages(cpu, addr, nbytes)
        yield from self.patch_lock.hold(cpu, ns)
        yield from self.flush_icache_range(cpu, addr, nbytes)
        self.metrics.inc("text_poke.pokes", pages)

    # aarch64_insn_set() (bpf_arch_text_invalidate()): the same loop with a
    # memset of the fill instruction in place of the copy
    text_poke_set = text_poke_copy

    def text_poke(self, cpu: int, addr: int, nbytes: int):
        """One instruction: aarch64_insn_patch_text_nosync(); more: the copy."""
        if nbytes > AARCH64_INSN_SIZE:
            yield from self.text_poke_copy(cpu, addr, nbytes)
            return
        yield from self.patch_insn_nosync(cpu, addr)

    def patch_insn_nosync(self, cpu: int, addr: int):
        """aarch64_insn_patch_text_nosync(): one 4-byte write through the
        fixmap under patch_lock, then caches_clean_inval_pou() of it."""
        ns, _ = self._write_pages(cpu, addr, AARCH64_INSN_SIZE)
        yield from self.patch_lock.hold(cpu, ns)
        yield self.env.timeout(int(self.caches_clean_inval_pou_ns(AARCH64_INSN_SIZE)))
        self.metrics.inc("text_poke.pokes")

    def _insn_writes_ns(
        self, cpu: int, addr: int, writes: int, nbytes: int, ns: float = 0.0
    ) -> float:
        """``ns`` plus ``writes`` aarch64_insn_write()s of ``nbytes``, each
        through the fixmap (map, copy, unmap with its TLBI) and its
        caches_clean_inval_pou()."""
        maint = self.caches_clean_inval_pou_ns(nbytes)
        for _ in range(writes):
            ns += self._write_pages(cpu, addr, nbytes)[0] + maint
        return ns

    def text_poke_each(
        self, cpu: int, addr: int, writes: int, nbytes: int, *, sync: bool = False
    ):
        """``writes`` separate instruction writes (aarch64_insn_write()) of
        ``nbytes`` each under text_mutex; ``sync`` ends with a kick. Each
        write maps, copies and unmaps (with its own broadcast TLBI)."""
        ns = self._insn_writes_ns(cpu, addr, writes, nbytes)
        if sync:
            ns += self.kick_all_cpus_sync_ns(cpu)
        yield from self.text_mutex.hold(cpu, ns)
        self.metrics.inc("text_poke.pokes", writes)

    def text_poke_bp(self, cpu: int, sites: int, insn_len: int = AARCH64_INSN_SIZE):
        """bpf_arch_text_poke() on arm64 (what x86 does with
        text_poke_bp()): under text_mutex, one
        aarch64_insn_patch_text_nosync() per site, a branch or a NOP: no
        breakpoint, no IPI. ``insn_len`` is ignored: every arm64
        instruction is 4 bytes. (No ``held``: only x86's optimizer of
        kprobes, which arm64 lacks, pokes with text_mutex held.)"""
        yield from self.text_mutex.lock(cpu)
        for _ in range(sites):
            yield from self.patch_insn_nosync(cpu, 0)
        self.text_mutex.release(cpu)

    def jump_label_update(self, cpu: int, sites: int, batched=None, site_rate=0.0):
        """__jump_label_update() of one key: each site by
        aarch64_insn_patch_text_nosync() (with its own cache maintenance),
        and in the batching era (``kernel.jump_label_batch``, v6.11+)
        arch_jump_label_transform_apply()'s kick_all_cpus_sync() at the
        end. ``batched`` None: the era's. ``site_rate`` is ignored: no
        breakpoint is armed, the other CPUs run the old or the new
        instruction, each written whole (a B or NOP may be changed
        concurrently, ARM ARM B2.2.5)."""
        for _ in range(sites):
            yield from self.patch_insn_nosync(cpu, 0)
        if self.batch if batched is None else batched:
            yield self.env.timeout(int(self.kick_all_cpus_sync_ns(cpu)))

    def flush_icache_range(self, cpu: int, addr: int, nbytes: int):
        """flush_icache_range(): caches_clean_inval_pou() over the range,
        then kick_all_cpus_sync() (arch/arm64/include/asm/cacheflush.h).
        The arm64 JIT ends every load with it (bpf_flush_icache()), and
        load_module()'s flush_module_icache() runs it per memory region."""
        ns = self.caches_clean_inval_pou_ns(nbytes) + self.kick_all_cpus_sync_ns(cpu)
        yield self.env.timeout(int(ns))

    def kprobe_arm(self, cpu: int, *, held: bool = False):
        """arch_arm_kprobe() / arch_disarm_kprobe()
        (arch/arm64/kernel/probes/kprobes.c): aarch64_insn_patch_text() of
        the one BRK (or the saved instruction back), under stop_machine(),
        with text_mutex held as the generic arm_kprobe() / disarm_kprobe()
        hold it around the arch call (``held``: the caller holds it)."""
        if not held:
            yield from self.text_mutex.lock(cpu)
        yield from self.patch_text(cpu, 1)
        if not held:
            self.text_mutex.release(cpu)

    def ftrace_update(self, cpu: int, sites: int, site_rate: float = 0.0):
        """ftrace_replace_code() -> ftrace_modify_code() per site
        (arch/arm64/kernel/ftrace.c): aarch64_insn_patch_text_nosync() of
        each NOP or BL, no stop_machine() (arch_ftrace_update_code()
        calls ftrace_modify_all_code() directly), no IPI; as for jump
        labels, no breakpoint, so ``site_rate`` counts no trap."""
        for _ in range(sites):
            yield from self.patch_insn_nosync(cpu, 0)

    def patch_text(self, cpu: int, addrs: int):
        """aarch64_insn_patch_text() of ``addrs`` instructions: under
        stop_machine(), the first CPU patches each with
        aarch64_insn_patch_text_nosync(), the others wait and ISB."""
        ns = self._insn_writes_ns(
            cpu, 0, addrs, AARCH64_INSN_SIZE, self.stop_machine_ns(cpu)
        )
        # every other CPU spins in multi_cpu_stop() for the whole of it
        self.metrics.cpu_time("stop_machine", int((self.nr_cpus - 1) * ns))
        yield self.env.timeout(int(ns))
        self.metrics.inc("text_poke.pokes", addrs)
