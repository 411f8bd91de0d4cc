"""kernel/bpf/core.c: BPF's kallsyms, the symbols of JITed images.

Each JITed program a privileged task loaded, each trampoline image and the
XDP dispatcher's image is a ``struct bpf_ksym`` on two structures at once:
the ``bpf_kallsyms`` list (RCU; /proc/kallsyms walks it) and ``bpf_tree``, a
latched rb-tree (include/linux/rbtree_latch.h) that address lookups
(``is_bpf_text_address()``, stack unwinding, perf) read without a lock. A
latch tree keeps two copies of the tree and a seqcount: a writer bumps the
seqcount, changes copy 0, bumps it again and changes copy 1, so a reader
always finds one copy stable. Writers serialize on ``bpf_lock``
(``spin_lock_bh()``):

- ``bpf_ksym_add()``: ``list_add_tail_rcu()`` and ``latch_tree_insert()``:
  two seqcount writes and an rb-tree insert into each copy, a descent from
  the root ordered by image address, then the link and the rebalance;
- ``bpf_ksym_del()``: ``latch_tree_erase()``, two seqcount writes and an
  ``rb_erase()`` of each copy (no search: the node is the ksym's own), and
  ``list_del_rcu()``; nothing but the lock when the ksym is on no list.

Callers (74451e66d516 'bpf: make jited programs visible in traces', v4.11,
for programs; before every preset):

- ``bpf_prog_kallsyms_add()`` at the end of a successful ``bpf_prog_load()``
  (after ``bpf_prog_select_runtime()`` and ``bpf_prog_alloc_id()``), for a
  JITed program whose loader holds the capability it checks (CAP_SYS_ADMIN,
  later bpf_capable(): CAP_BPF or CAP_SYS_ADMIN; the model's
  ``privileged``); no symbol otherwise;
- ``bpf_prog_kallsyms_del_all()`` from ``__bpf_prog_put_noref()`` when the
  last reference goes, before the image is freed: it takes ``bpf_lock``
  for every JITed program, with a symbol or not;
- ``bpf_image_ksym_add()`` / ``bpf_image_ksym_del()`` for trampoline images
  (added in ``bpf_tramp_image_alloc()`` once the image is allocated, deleted
  before it is freed) and for the dispatcher's image (added when
  ``bpf_dispatcher_change_prog()`` first allocates it, never deleted): from
  Jiri Olsa's series 20200312195610.346362-1-jolsa@kernel.org ('bpf: Add
  trampolines to kallsyms', 'bpf: Add dispatchers to kallsyms'), pulled
  into net-next on 2020-03-13 for v5.7 (release inferred; commit ids not
  found in the history searched). Every preset from 5.10 has them; 5.4 had
  no trampolines or dispatcher at all (v5.5, v5.6), so the model's images
  in a 5.4 run are anachronistic with their symbols or without.

Costs (estimates, as vmalloc's busy tree charges them): one
``rb_node_visit_ns`` per node a descent reads, about log2 of the symbols in
the tree (:func:`simcore.kernel.vmalloc.rb_depth`); each line written costs a
transfer from the previous holder of ``bpf_lock`` when another CPU held it
last (``SpinLock.line_ns``), as the lines a writer dirties are mostly the
ones the last writer dirtied (the seqcount, the list head and tail, the
nodes near the insertion point). ``perf_event_ksymbol()`` and the
``bpf_prog_ksym_set_name()`` formatting around the locked section are not
modelled.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from simcore.kernel.vmalloc import rb_depth

if TYPE_CHECKING:
    from simcore.hw.locks import SpinLock
    from simcore.kernel.main import Kernel

# Estimate, lines dirtied by bpf_ksym_add(): two seqcount bumps of one line;
# per latch copy, the link and the rebalance, two lines as vmalloc's busy
# tree insert counts them; list_add_tail_rcu(): the new entry, the old
# tail's next and the head's prev, three lines
KSYM_ADD_LINES = 2 + 2 * 2 + 3
# Estimate, lines dirtied by bpf_ksym_del(): two seqcount bumps; per latch
# copy rb_erase() and its rebalance, two lines; list_del_rcu(): the
# neighbours' next and prev, two lines
KSYM_DEL_LINES = 2 + 2 * 2 + 2
# Estimate, nodes read by the two rb_erase()s: the successor of a node with
# two children is found below it, one node on average in a balanced tree
KSYM_DEL_READS = 2


class BpfKallsyms:
    """``bpf_lock``, ``bpf_kallsyms`` and ``bpf_tree`` of one kernel.

    ``nr`` is the number of ksyms in the tree; the lock is created on first
    use, so runs that never load a program report no ``lock.bpf_lock.*``."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.visit_ns = kernel.profile.kernel_costs.rb_node_visit_ns.value
        self.nr = 0

    @cached_property
    def lock(self) -> SpinLock:
        """``static DEFINE_SPINLOCK(bpf_lock)``."""
        return self.kernel.machine.spinlock("bpf_lock")

    def _locked(self, cpu: int, reads: float, lines: int):
        """One section under bpf_lock: ``reads`` nodes read, ``lines``
        lines written."""
        lock = self.lock
        extra = yield from lock.take(cpu)
        ns = reads * self.visit_ns + lines * lock.line_ns(cpu, self.visit_ns)
        yield self.env.timeout(int(ns + extra))
        lock.release(cpu)

    def ksym_add(self, cpu: int):
        """bpf_ksym_add(): list_add_tail_rcu() and latch_tree_insert(), a
        descent of each copy of a tree one larger, under bpf_lock."""
        self.nr += 1
        self.metrics.inc("bpf.ksyms")
        yield from self._locked(cpu, 2 * rb_depth(self.nr), KSYM_ADD_LINES)

    def ksym_del(self, cpu: int, on_list: bool = True):
        """bpf_ksym_del(): under bpf_lock, latch_tree_erase() and
        list_del_rcu() when the ksym is on the list (``on_list``)."""
        if not on_list:
            yield from self._locked(cpu, 0, 0)
            return
        self.nr -= 1
        self.metrics.inc("bpf.ksyms", -1)
        yield from self._locked(cpu, KSYM_DEL_READS, KSYM_DEL_LINES)

    # -- the callers ------------------------------------------------------------
    def prog_kallsyms_add(self, cpu: int, privileged: bool):
        """bpf_prog_kallsyms_add(): a symbol for a JITed program whose
        loader is privileged. Returns whether it was added."""
        if not privileged:
            return False
        yield from self.ksym_add(cpu)
        return True

    def prog_kallsyms_del_all(self, cpu: int, added: bool):
        """bpf_prog_kallsyms_del_all() -> bpf_prog_kallsyms_del() ->
        bpf_ksym_del(): bpf_lock is taken whether or not the program got a
        symbol (its list node is checked under the lock)."""
        yield from self.ksym_del(cpu, added)

    def image_ksym_add(self, cpu: int):
        """bpf_image_ksym_add(): a trampoline's or the dispatcher's image."""
        yield from self.ksym_add(cpu)

    def image_ksym_del(self, cpu: int):
        """bpf_image_ksym_del(): a trampoline image about to be freed."""
        yield from self.ksym_del(cpu)
