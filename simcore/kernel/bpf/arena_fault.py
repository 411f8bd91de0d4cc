"""kernel/bpf/arena.c, faults: a user access to a page the user view does
not map yet, and a BPF access to an unallocated page.

Kernel functions modelled:

- ``arena_vm_fault()`` with the core fault around it: ``vmalloc_to_page()``
  under the lock; a page already there is mapped into the user view, an
  absent one is allocated (one range-tree slot, one page, one kernel PTE)
  unless ``BPF_F_SEGV_ON_FAULT``;
- BPF accesses to an unallocated page: ``ex_handler_bpf()`` fix-up on every
  access (``kernel.arena_fault: fixup``), or in the 2026 tree
  ``bpf_arena_handle_page_fault()``, which maps the per-arena scratch page
  with ``ptep_try_set()`` (no flush) and reports to the program's stderr
  stream once per page (``scratch_page``); allocating over a scratch PTE
  clears it and flushes that page first (break-before-make).
"""

from __future__ import annotations

# A BPF load/store at an unallocated arena page: #PF entry, exception table
# search, ex_handler_bpf(), return. Estimate: 1-2 us (arena.md section 6).
KERNEL_FAULT_NS = 1500
# bpf_stream_printk() of one "ERROR: Arena ... access" line plus
# bpf_stream_dump_stack() of a few frames. Estimate: a few microseconds of
# formatting and stack unwinding.
STREAM_REPORT_NS = 3000
# A user minor fault without the arena's own work: exception entry,
# handle_mm_fault() to vm_ops->fault, finish_fault() and return. Estimate:
# under the 661 ns Haswell MADV_DONTNEED + refault of one page
# (20190525082203.6531-1-namit@vmware.com, hardware.md section 4), which
# also pays the madvise call.
USER_FAULT_NS = 450


class ArenaFault:
    """The two fault paths, mixed into
    :class:`~simcore.kernel.bpf.arena.BpfArena` (whose fields it uses)."""

    # -- arena_vm_fault --------------------------------------------------------------------
    def user_fault(self, cpu: int, pgoff: int):
        """A user access to an unmapped page of the VMA: the fault, then
        arena_vm_fault(), then the user PTE. Returns the pfn, or None for
        SIGSEGV."""
        t_start = self.env.now
        m = self.metrics
        yield self.env.timeout(USER_FAULT_NS)
        t0, extra = yield from self.lock(cpu)
        yield self.env.timeout(int(self.walk_ns + extra))  # vmalloc_to_page()
        st = self.strategy
        pfn = st.backing_pfn(self, pgoff)
        if pgoff in self.scratch or (pfn is None and self.segv_on_fault):
            self.unlock(cpu, t0)
            m.inc("arena.user_sigsegv")
            return None
        if pfn is not None:
            if self.rt.free_in(pgoff, 1):
                # backed but free (a strategy backing more than asked for)
                yield from st.claim(cpu, self, pgoff)
                self._use(1)
        else:
            self.rt.clear(pgoff, 1)
            yield self.env.timeout(int(self._tree_ns()))
            got = yield from st.populate(cpu, self, pgoff, 1)
            if not got:
                self.rt.set(pgoff, 1)
                yield self.env.timeout(int(self._tree_ns()))
                self.unlock(cpu, t0)
                m.inc("arena.user_sigsegv")
                return None
            self._use(1)
            m.inc("arena.user_fault_allocs")
            pfn = st.backing_pfn(self, pgoff)
        # finish_fault() installs the user PTE just after the unlock, and a
        # page reference keeps a page freed in between alive until it is
        # unmapped; the model installs it before the unlock instead, so a
        # free never races a fault into mapping a freed page
        self.user[pgoff] = pfn
        self.unlock(cpu, t0)
        yield self.env.timeout(int(self.pte_ns))
        m.inc("arena.user_faults")
        m.latency("arena_fault", self.env.now - t_start)
        return pfn

    # -- BPF access to an unallocated page ---------------------------------------------------
    def kernel_fault(self, cpu: int, pgoff: int):
        """A BPF load or store at an unmapped page of the window. Returns
        True when the page is mapped afterwards (the scratch page)."""
        m = self.metrics
        ka = self.kaddr(pgoff)
        # the installer needs the PTE table (pre-populated in its era) and
        # a free slot the range tree does not hand out meanwhile
        if (
            self.scratch_era
            and self.pt.vmap.has_pte_table(ka)
            and self.rt.free_in(pgoff, 1)
        ):
            # lockless: ptep_try_set() races allocations by cmpxchg, and
            # the range tree is only read here to keep the model's PTEs apart
            yield self.env.timeout(KERNEL_FAULT_NS + STREAM_REPORT_NS)
            if self.pt.lookup(ka) is None and pgoff not in self.pfn:
                yield from self.pt.vmap_pages_range(cpu, ka, [self.scratch_pfn])
                self.scratch.add(pgoff)
                m.inc("arena.scratch_installs")
            m.cpu_time("kfault", KERNEL_FAULT_NS + STREAM_REPORT_NS)
            return True
        # ex_handler_bpf(): the load reads 0, the store is dropped
        yield self.env.timeout(KERNEL_FAULT_NS)
        m.inc("arena.kernel_faults")
        m.cpu_time("kfault", KERNEL_FAULT_NS)
        return False
