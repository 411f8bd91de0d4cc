"""kernel/bpf/verifier.c: the memory ``bpf_check()`` holds while it runs.

A load's verification, between ``bpf_prog_alloc()`` and the JIT, takes and
gives back, in order:

1. ``env = kvzalloc(sizeof(struct bpf_verifier_env))``: about 25 KiB in 6.x
   (:data:`BPF_VERIFIER_ENV_SIZE`), above KMALLOC_MAX_CACHE_SIZE, so an
   order-3 block from the page allocator tried with __GFP_NORETRY, and
   vmalloc() only when that fails (:func:`simcore.kernel.util.kvmalloc`).
   Its pages come and go between the program struct's and the JIT image's,
   which is what spreads a load's footprint over the direct map;
2. ``env->insn_aux_data = vzalloc()``: one ``struct bpf_insn_aux_data`` per
   instruction;
3. the walk (``do_check()``) and its verifier states: not modelled (the
   states are small kzalloc()s whose number depends on the program's
   branches, and they cost the same whatever the allocator);
4. the rewrites after the walk (``convert_ctx_accesses()``,
   ``do_misc_fixups()``, zero extension, ...): every patch that puts
   ``cnt`` > 1 instructions in place of one goes through
   ``bpf_patch_insn_data()``, which resizes the aux array and calls
   ``bpf_patch_insn_single()`` (kernel/bpf/core.c, whose
   ``bpf_prog_realloc()`` vmalloc()s a larger program struct and vfree()s
   the old one only when the page count grows). How the aux array grows is
   the era knob ``kernel.bpf_insn_aux``:

   - ``vzalloc`` (up to v6.17): a new vzalloc() of the patched length before
     the program is patched, then ``adjust_insn_aux_data()`` copies the old
     entries around the patch into it and vfree()s the old array: a
     vmalloc/vfree pair, and a lazily freed area, for every patch;
   - ``vrealloc`` (77620d126739, v6.18): vrealloc(), which keeps the area
     while its pages have room (:func:`simcore.kernel.util.vrealloc`), and
     ``adjust_insn_aux_data()`` memmove()s the entries in place;

   the number of patches and their length depend on the program: settings
   of the ``bpf_jit`` workload, none by default;
5. ``vfree(env->insn_aux_data)`` and ``kvfree(env)`` at the end, before the
   JIT runs (a program of one function is JITed by
   ``bpf_prog_select_runtime()``, after bpf_check() returns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.constants import PAGE
from simcore.kernel.util import Shadow, copy_ns, kvfree, kvzalloc, vrealloc, vzalloc

if TYPE_CHECKING:
    from simcore.kernel.bpf.core import BpfProg
    from simcore.kernel.main import Kernel

# Estimate: sizeof(struct bpf_insn_aux_data) of 6.x, summed from its fields
# in include/linux/bpf_verifier.h (a 24-byte union with the BTF variable's
# pointer, map_key_state, obj_new_size, ctx_field_size, seen, orig_idx and
# a dozen flags): about 80 bytes
BPF_INSN_AUX_SIZE = 80

# Estimate: sizeof(struct bpf_verifier_env) of 6.x on x86-64, summed from
# its fields in include/linux/bpf_verifier.h (the layout after
# bpf_subprog_info gained its args[] and BPF_ID_MAP_SIZE its factor of
# MAX_CALL_FRAMES). subprog_info[BPF_MAX_SUBPROGS + 2] is 258 entries of
# 64 bytes (start, linfo_idx, the stack fields, flags, priv_stack_mode,
# arg_cnt and args[MAX_BPF_FUNC_REG_ARGS] of 8 bytes each): 16.5 KiB; the
# idmap_scratch union is 4 + 8 * BPF_ID_MAP_SIZE bytes, BPF_ID_MAP_SIZE
# being (MAX_BPF_REG + MAX_BPF_STACK / 8) * MAX_CALL_FRAMES = 600: 4.7 KiB;
# used_maps[64] and used_btfs[64] (two pointers each): 1.5 KiB; the log
# with its 1 KiB kbuf; insn_buf and epilogue_buf (INSN_BUF_SIZE = 32
# instructions each): 512 B; tmp_str_buf: 320 B; fake_reg[2] (struct
# bpf_reg_state, 120 B): 240 B; counters, pointers and bt about 400 B.
# About 25 KiB in all: get_order() 3, eight pages. Releases before these
# fields grew had a smaller env (just under 8 KiB by the same count over an
# early-2023 header: a kmalloc-8k object); the model keeps the later size in
# every era.
BPF_VERIFIER_ENV_SIZE = 25 << 10
# Estimate: a patch lands mid-program on average, so adjust_insn_aux_data()
# moves half the entries in place (vrealloc era) and bpf_patch_insn_single()
# half the instructions
PATCH_TAIL_SHARE = 0.5


class BpfVerifier:
    """bpf_check()'s allocations for one kernel: see the module doc."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.realloc = kernel.knobs.bpf_insn_aux == "vrealloc"
        self.zero_ns = kernel.profile.kernel_costs.page_zero_ns.value

    def bpf_check(self, cpu: int, prog: BpfProg, patches: int = 0, cnt: int = 2):
        """bpf_check()'s memory: env, insn_aux_data, ``patches`` patches of
        ``cnt`` instructions each, then both freed. True when it had the
        memory it needed (every program verifies), False for -ENOMEM."""
        k = self.kernel
        env = yield from kvzalloc(k, cpu, BPF_VERIFIER_ENV_SIZE, caller="bpf_check")
        if env is None:
            return False
        # env->insn_aux_data = vzalloc(array_size(sizeof(*aux), len))
        aux = yield from vzalloc(
            k, cpu, prog.insn_cnt * BPF_INSN_AUX_SIZE, caller="bpf_check"
        )
        ok = aux is not None
        if ok:
            for _ in range(patches):
                aux, ok = yield from self.patch_insn_data(cpu, prog, aux, cnt)
                if not ok:
                    break
        if aux is not None:
            # the exit path: vfree(env->insn_aux_data)
            yield from k.vmalloc.vfree(cpu, aux.area)
        yield from kvfree(k, cpu, env)
        return ok

    def patch_insn_data(self, cpu: int, prog: BpfProg, aux: Shadow, cnt: int):
        """bpf_patch_insn_data(): one instruction replaced by ``cnt``
        (``cnt`` > 1, or nothing is allocated). Returns (the aux array now
        in env->insn_aux_data, whether the patch had its memory)."""
        k = self.kernel
        if cnt <= 1:  # an instruction rewritten in place: nothing to resize
            return aux, True
        old_len = prog.insn_cnt
        nbytes = (old_len + cnt - 1) * BPF_INSN_AUX_SIZE
        if self.realloc:
            grown = yield from vrealloc(
                k, cpu, aux, nbytes, zero=True, caller="bpf_patch_insn_data"
            )
            if grown is None:  # the old array stays env's, freed on exit
                return aux, False
            aux = grown
        else:
            new = yield from vzalloc(k, cpu, nbytes, caller="bpf_patch_insn_data")
            if new is None:
                return aux, False
        ok = yield from k.bpf.patch_insn_single(cpu, prog, cnt)
        if not ok:
            if not self.realloc:
                yield from k.vmalloc.vfree(cpu, new.area)
            return aux, False
        # adjust_insn_aux_data()
        if self.realloc:
            # memmove() of the entries after the patch, memset() of the
            # patched range
            moved = int(old_len * PATCH_TAIL_SHARE) * BPF_INSN_AUX_SIZE
            cleared = (cnt - 1) * BPF_INSN_AUX_SIZE
            ns = copy_ns(k, moved) + self.zero_ns * cleared / PAGE
            yield self.env.timeout(int(ns))
        else:
            # both halves memcpy()d into the new array, the old one vfree()d
            yield self.env.timeout(int(copy_ns(k, old_len * BPF_INSN_AUX_SIZE)))
            yield from k.vmalloc.vfree(cpu, aux.area)
            aux = new
        self.metrics.inc("bpf.insn_patches")
        return aux, True
