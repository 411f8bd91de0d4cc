"""kernel/bpf/core.c: the memory side of loading and freeing a JIT image.

``bpf_prog_load`` here covers what a load does with memory: first
``bpf_prog_alloc()``, the ``struct bpf_prog`` with its instructions, a
``__vmalloc()`` of whole pages (``bpf_prog_size(insn_cnt)`` rounded up)
that lives as long as the program; then ``bpf_check()``
(:mod:`.verifier`: its kvzalloc()ed ``env``, the vzalloc()ed
``env->insn_aux_data`` and the instruction patches, whose
``bpf_patch_insn_single()`` and ``bpf_prog_realloc()`` are here); then the
JIT image: sized (the strategy's rounding: whole pages for
``bpf_jit_binary_alloc``, 64-byte chunks for ``bpf_jit_binary_pack_alloc``),
charged against ``bpf_jit_limit`` (``bpf_jit_charge_modmem``), allocated,
written and finalized through the strategy; last, the program's symbol
(``bpf_prog_kallsyms_add()``, :mod:`.kallsyms`). ``bpf_prog_free`` takes
the symbol out (``bpf_prog_kallsyms_del_all()``), gives the image back,
then ``__bpf_prog_free()`` vfree()s the struct. The verifier's walk and the
JIT passes are not modelled: they cost the same whatever the allocator.

Trampolines (kernel/bpf/trampoline.c ``bpf_trampoline_update()``) and the
XDP dispatcher (kernel/bpf/dispatcher.c ``bpf_dispatcher_change_prog()``)
are executable allocations of their own through the same strategy (kind
``bpf_trampoline``): the image is allocated, written and protected, and the
call site in the traced function is patched live with ``text_poke_bp``
(``bpf_arch_text_poke()``), whose sync rounds IPI every CPU. Their images
have kallsyms entries too (``bpf_image_ksym_add()``).

``bpf_jit_limit`` defaults to half the executable range
(``bpf_jit_alloc_exec_limit() >> 1`` rounded up to a page: MODULES_END -
MODULES_VADDR on x86), and loads by unprivileged users past it fail with
-EPERM; privileged loads are not limited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from simcore.constants import PAGE
from simcore.hooks import tracepoint
from simcore.kernel.bpf.kallsyms import BpfKallsyms
from simcore.kernel.bpf.verifier import (
    PATCH_TAIL_SHARE,
    BpfVerifier,
)
from simcore.kernel.execmem import ExecAlloc
from simcore.kernel.util import copy_ns

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel
    from simcore.kernel.vmalloc import VmArea

# arch_bpf_trampoline_size() is found by a dry run of the x86 JIT: the
# prologue/epilogue and register saves are a few hundred bytes and every
# attached program adds a call sequence. Estimate: 256 B + 64 B per program.
TRAMPOLINE_BASE = 256
TRAMPOLINE_PER_PROG = 64
# the dispatcher image: BPF_DISPATCHER_MAX = 48 programs of a compare and a
# direct call, one page in the kernel (bpf_dispatcher_change_prog())
DISPATCHER_IMAGE = PAGE
# Estimate: emit_bpf_dispatcher() writes per program a 7-byte
# `cmp rdx, imm32` and a 6-byte near jump, plus its share of the
# binary-search branches: about 16 bytes.
DISPATCHER_BYTES_PER_PROG = 16


def bpf_jit_limit(modules_vaddr: int, modules_end: int) -> int:
    """bpf_jit_limit's default: half the executable range, page-rounded."""
    return -(-((modules_end - modules_vaddr) >> 1) // PAGE) * PAGE


EPERM = 1
# sizeof(struct bpf_prog) before its insnsi[] (include/linux/bpf.h, 6.x on
# x86-64: about 80 bytes) and sizeof(struct bpf_insn)
BPF_PROG_HEADER = 80
BPF_INSN_SIZE = 8
# Estimate: the x86-64 and arm64 JITs emit about 5 bytes of machine code per
# BPF instruction (x86 instructions of 3-7 bytes, arm64 one or two 4-byte
# ones), so a program's instruction count is its image size / 5.
JIT_BYTES_PER_INSN = 5


def prog_insns(proglen: int) -> int:
    """A program's BPF instructions (prog->len) from its JIT image size."""
    return max(1, proglen // JIT_BYTES_PER_INSN)


def bpf_prog_size_pages(insn_cnt: int) -> int:
    """round_up(bpf_prog_size(insn_cnt), PAGE_SIZE) / PAGE_SIZE."""
    return -(-(BPF_PROG_HEADER + insn_cnt * BPF_INSN_SIZE) // PAGE)


@dataclass(slots=True)
class BpfProg:
    """struct bpf_prog: allocated by bpf_prog_alloc(), the image set by the
    JIT."""

    proglen: int
    charged: int = 0
    image: ExecAlloc | None = None
    trampoline: ExecAlloc | None = None
    struct: VmArea | None = None  # the vmalloc'ed struct bpf_prog
    insn_cnt: int = 0  # prog->len
    ksym: bool = False  # on bpf_kallsyms (bpf_prog_kallsyms_add())


class BpfCore:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.hooks = kernel.hooks
        # bpf_jit_limit from bpf_jit_alloc_exec_limit(): the range BPF
        # images come from (x86 modules; arm64 by era)
        self.limit = bpf_jit_limit(
            *kernel.layout.ranges[kernel.execmem_range("bpf_prog")]
        )
        self.charged = 0
        self._dispatcher: ExecAlloc | None = None
        self.verifier = BpfVerifier(kernel)
        self.kallsyms = BpfKallsyms(kernel)

    @tracepoint("bpf_prog_load")
    def prog_load(
        self,
        cpu: int,
        proglen: int,
        privileged: bool = True,
        patches: int = 0,
        patch_cnt: int = 2,
    ):
        """Returns the BpfProg, or -EPERM / None when memory runs out.

        The verifier applies ``patches`` instruction patches of
        ``patch_cnt`` instructions each (bpf_patch_insn_data()). The JIT
        image size ``proglen`` is the program after them, so
        bpf_prog_alloc() sizes the struct for the instructions before them:
        ``patches * (patch_cnt - 1)`` fewer."""
        strategy = self.kernel.exec_alloc
        t0 = self.env.now
        size = strategy.bpf_image_size(proglen)
        vm = self.kernel.vmalloc
        first = max(1, prog_insns(proglen) - patches * (patch_cnt - 1))
        # bpf_prog_alloc(): the program struct and its instructions, first;
        # bpf_prog_alloc_no_stats(): __vmalloc(size, GFP_KERNEL | __GFP_ZERO)
        struct = yield from vm.vmalloc(
            cpu, bpf_prog_size_pages(first) * PAGE, caller="bpf_prog_alloc", zero=True
        )
        if struct is None:
            self.metrics.inc("bpf.load_failures")
            return None
        prog = BpfProg(proglen, struct=struct, insn_cnt=first)
        ok = yield from self.verifier.bpf_check(cpu, prog, patches, patch_cnt)
        if not ok:
            yield from vm.vfree(cpu, prog.struct)
            self.metrics.inc("bpf.load_failures")
            return None
        # at JIT time, bpf_jit_charge_modmem(): atomic add, undo and fail
        # past the limit (the struct is freed with the failed load)
        if self.charged + size > self.limit and not privileged:
            yield from vm.vfree(cpu, prog.struct)
            self.metrics.inc("bpf.jit_limit_failures")
            return -EPERM
        self.charged += size
        image = yield from strategy.alloc(cpu, size, "bpf_prog")
        if image is None:
            self.charged -= size
            yield from vm.vfree(cpu, prog.struct)
            self.metrics.inc("bpf.load_failures")
            return None
        strategy.shrink_request(image, proglen)
        yield from strategy.write(cpu, image, size)
        yield from strategy.finalize(cpu, image)
        # bpf_flush_icache() at the end of the JIT: a no-op on x86, an
        # I-cache sync of the image and an IPI to every CPU on arm64
        yield from self.kernel.text_poke.flush_icache_range(cpu, image.addr, size)
        prog.charged = size
        prog.image = image
        prog.ksym = yield from self.kallsyms.prog_kallsyms_add(cpu, privileged)
        self.metrics.inc("bpf.progs_loaded")
        self.metrics.latency("bpf_prog_load", self.env.now - t0)
        return prog

    @tracepoint("bpf_prog_free")
    def prog_free(self, cpu: int, prog: BpfProg):
        """__bpf_prog_put_noref(): the symbol out of kallsyms
        (bpf_prog_kallsyms_del_all()); then bpf_jit_free(): give the image
        back, uncharge bpf_jit_limit; then __bpf_prog_free()."""
        t0 = self.env.now
        if prog.trampoline is not None:
            yield from self.trampoline_detach(cpu, prog)
        yield from self.kallsyms.prog_kallsyms_del_all(cpu, prog.ksym)
        prog.ksym = False
        yield from self.kernel.exec_alloc.free(cpu, prog.image)
        self.charged -= prog.charged
        if prog.struct is not None:  # __bpf_prog_free(): vfree(fp)
            yield from self.kernel.vmalloc.vfree(cpu, prog.struct)
        self.metrics.inc("bpf.progs_freed")
        self.metrics.latency("bpf_prog_free", self.env.now - t0)

    # -- instruction patches (the verifier's rewrites) ---------------------------
    def prog_realloc(self, cpu: int, prog: BpfProg, insn_cnt: int):
        """bpf_prog_realloc(): nothing while round_up(bpf_prog_size()) keeps
        the page count; else __vmalloc() of the new size (zeroed), memcpy()
        of the old pages and __bpf_prog_free() (vfree()) of the old struct.
        False when the vmalloc() failed (the old struct stays)."""
        pages = bpf_prog_size_pages(insn_cnt)
        old = prog.struct
        if pages <= old.nr_pages:
            return True
        vm = self.kernel.vmalloc
        new = yield from vm.vmalloc(
            cpu, pages * PAGE, caller="bpf_prog_realloc", zero=True
        )
        if new is None:
            return False
        yield self.env.timeout(int(copy_ns(self.kernel, old.nr_pages * PAGE)))
        yield from vm.vfree(cpu, old)
        prog.struct = new
        return True

    def patch_insn_single(self, cpu: int, prog: BpfProg, cnt: int):
        """bpf_patch_insn_single(): one instruction replaced by ``cnt``; a
        patch of one is a copy in place; a longer one reallocates the
        program (bpf_prog_realloc()) and moves the instructions after the
        patch (PATCH_TAIL_SHARE of them). bpf_adj_branches()' walk is not
        modelled. False when the realloc failed."""
        if cnt <= 1:
            return True
        insn_cnt = prog.insn_cnt + cnt - 1
        ok = yield from self.prog_realloc(cpu, prog, insn_cnt)
        if not ok:
            return False
        moved = int(prog.insn_cnt * PATCH_TAIL_SHARE) * BPF_INSN_SIZE
        prog.insn_cnt = insn_cnt
        yield self.env.timeout(int(copy_ns(self.kernel, moved)))
        return True

    # -- trampolines and the dispatcher ------------------------------------------
    def trampoline_attach(self, cpu: int, prog: BpfProg, nr_progs: int = 1):
        """bpf_trampoline_link_prog() -> bpf_trampoline_update(): allocate
        the image (arch_alloc_bpf_trampoline()), JIT into it, protect it,
        then point the traced function's fentry at it with
        bpf_arch_text_poke() (text_poke_bp). False when memory ran out."""
        st = self.kernel.exec_alloc
        t0 = self.env.now
        size = TRAMPOLINE_BASE + TRAMPOLINE_PER_PROG * nr_progs
        image = yield from st.alloc(cpu, size, "bpf_trampoline")
        if image is None:
            self.metrics.inc("bpf.load_failures")
            return False
        # bpf_tramp_image_alloc(): the image's symbol, before the JIT fills it
        yield from self.kallsyms.image_ksym_add(cpu)
        yield from st.write(cpu, image, size)
        yield from st.finalize(cpu, image)
        yield from self.kernel.text_poke.text_poke_bp(cpu, 1)
        prog.trampoline = image
        self.metrics.inc("bpf.trampolines")
        self.metrics.latency("bpf_trampoline_update", self.env.now - t0)
        return True

    def trampoline_detach(self, cpu: int, prog: BpfProg):
        """bpf_trampoline_unlink_prog(): restore the fentry nop with
        text_poke_bp, then (after the RCU tasks grace period, which costs no
        CPU time here) take the image's symbol out (bpf_image_ksym_del())
        and free the image."""
        image = prog.trampoline
        if image is None:
            return
        yield from self.kernel.text_poke.text_poke_bp(cpu, 1)
        yield from self.kallsyms.image_ksym_del(cpu)
        yield from self.kernel.exec_alloc.free(cpu, image)
        prog.trampoline = None
        self.metrics.inc("bpf.trampolines", -1)

    def dispatcher_update(self, cpu: int, nr_progs: int):
        """bpf_dispatcher_change_prog(): the first call allocates the
        dispatcher image and adds its symbol; every change JITs the new
        compare-and-call sequence into the RW half, copies it into the live
        image (bpf_arch_text_copy) and repoints the dispatcher call site
        (text_poke_bp)."""
        st = self.kernel.exec_alloc
        if self._dispatcher is None:
            image = yield from st.alloc(cpu, DISPATCHER_IMAGE, "bpf_trampoline")
            if image is None:
                return False
            yield from self.kallsyms.image_ksym_add(cpu)  # bpf_image_ksym_add()
            yield from st.write(cpu, image, DISPATCHER_IMAGE)
            yield from st.finalize(cpu, image)
            self._dispatcher = image
        nbytes = min(DISPATCHER_IMAGE, DISPATCHER_BYTES_PER_PROG * max(1, nr_progs))
        yield from st.update(cpu, self._dispatcher, nbytes)
        yield from self.kernel.text_poke.text_poke_bp(cpu, 1)
        self.metrics.inc("bpf.dispatcher_updates")
        return True
