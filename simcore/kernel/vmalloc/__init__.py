"""mm/vmalloc.c: KVA allocation, vmalloc/vfree, vm_map_ram, lazy purge, readers.

Kernel functions modelled, step by step with their locks:

- ``__vmalloc_node_range()`` -> ``__get_vm_area_node()`` ->
  ``alloc_vmap_area()`` (``node_alloc()`` / ``node_pool_del_va()``, then
  ``preload_this_cpu_lock()`` + ``__alloc_vmap_area()`` under
  ``free_vmap_area_lock``, then ``insert_vmap_area()`` into the busy tree),
  ``__vmalloc_area_node()`` (``vm_area_alloc_pages()`` and
  ``vmap_pages_range()``); on failure ``reclaim_and_purge_vmap_areas()`` and
  one retry;
- ``vfree()`` -> ``remove_vm_area()`` (``find_unlink_vmap_area()``,
  ``vunmap_range_noflush()``, ``free_vmap_area_noflush()``),
  ``vm_reset_perms()`` for ``VM_FLUSH_RESET_PERMS``, ``__free_page()``;
- ``__purge_vmap_area_lazy()`` with ``decay_va_pool_node()``,
  ``purge_vmap_node()`` (parallel helpers via ``schedule_work_on()``) and
  ``reclaim_list_global()``; ``drain_vmap_area_work()`` (workqueue) or the
  caller's ``try_purge_vmap_area_lazy()`` by era;
- ``vm_map_ram()`` / ``vm_unmap_ram()`` with per-CPU ``vmap_block``s:
  ``vb_alloc()``, ``new_vmap_block()``, ``vb_free()``, ``free_vmap_block()``,
  ``purge_fragmented_block(s)()``, ``purge_fragmented_blocks_allcpus()``,
  ``_vm_unmap_aliases()`` / ``vm_unmap_aliases()``;
- readers: ``vread_iter()`` (/proc/kcore) with
  ``find_vmap_area_exceed_addr_lock()``, ``aligned_vread_iter()``,
  ``vmap_ram_vread_iter()``, ``zero_iter()``; /proc/vmallocinfo via
  ``vmalloc_info_show()`` + ``show_purge_info()`` (per-node era) or the
  ``s_start()``/``s_show()``/``s_stop()`` iterator (global era), both under
  fs/seq_file.c ``seq_read_iter()``;
- seeding: a captured /proc/vmallocinfo as the state at time zero, carved
  out of the free tree as ``pcpu_get_vm_areas()`` does.

Eras (``kernel.vmap_locking``):

- ``global`` (v5.11-v6.8): one busy tree under ``vmap_area_lock``, the free
  tree under ``free_vmap_area_lock``, lazily freed areas merged into a purge
  tree under ``purge_vmap_area_lock`` (20201116220033.1837-2-urezki@gmail.com).
  Kernels 5.2-5.10 queued lazy areas on a lockless llist instead; the 5.10
  preset is modelled with the purge tree.
- ``per_node`` (v6.9+): ``vmap_node``s with ``busy``, ``lazy`` and size
  ``pool``s; ``free_vmap_area_lock`` is taken on pool misses, for other
  ranges and when purged areas merge back (20240102184633.748113-1-urezki@gmail.com).

Both eras share one free tree over the whole kernel address space, as
``vmap_init_free_space()`` builds it ([1, ULONG_MAX) minus early areas);
a named range (``vmalloc``, ``modules``) only sets ``vstart``/``vend``.

Costs come from the profile's ``kernel_costs``: one ``rb_node_visit_ns``
per tree node the operation really touches (``KvaSpace`` counts them; busy
and lazy trees charge their depth), a PTE write per page, a slab
allocation per ``vm_struct``/``vmap_area``/``vmap_block`` object. The
physical side (``vm_area_alloc_pages()``, ``__free_page()``) is charged per
page in :mod:`.core`, in methods of their own so the buddy-allocator model
can take their place.

Files, after the parts of mm/vmalloc.c (:class:`Vmalloc` is one class
composed of a mixin per part):

- ``area.py``: ``vm_struct`` flags, ``vmap_area`` sub-types, :class:`VmArea`;
- ``vmap_area.py``: ``alloc_vmap_area()``, ``find_vmap_area()``,
  ``find_unlink_vmap_area()``, ``struct vmap_node`` and its pools
  (``node_pool_del_va()``, ``decay_va_pool_node()``);
- ``purge.py``: ``free_vmap_area_noflush()``, ``drain_vmap_area_work()``,
  ``__purge_vmap_area_lazy()``, ``purge_vmap_node()``,
  ``reclaim_and_purge_vmap_areas()``, ``reclaim_list_global()``;
- ``vmap_block.py``: ``vmap_block``, ``vm_map_ram()``, ``vm_unmap_ram()``,
  ``vm_unmap_aliases()`` and the purge of fragmented blocks;
- ``vread.py``: ``vread_iter()`` and /proc/vmallocinfo;
- ``seed.py``: a captured /proc/vmallocinfo as the state at time zero,
  placed on the simulated layout, with its pages and page tables;
- ``core.py``: :class:`Vmalloc` itself: its state, ``__vmalloc_node_range()``,
  ``vm_area_alloc_pages()``, ``vfree()``, ``get_vm_area()``,
  ``free_vm_area()``, ``vm_reset_perms()``, and ``check()``/``finish()``.
"""

from simcore.kernel.vmalloc.area import (
    VM_ALLOC,
    VM_ALLOW_HUGE_VMAP,
    VM_DMA_COHERENT,
    VM_FLUSH_RESET_PERMS,
    VM_IOREMAP,
    VM_MAP,
    VM_NO_GUARD,
    VM_NO_HUGE_VMAP,
    VM_SPARSE,
    VM_USERMAP,
    VMAP_BLOCK,
    VMAP_RAM,
    VmArea,
)
from simcore.kernel.vmalloc.core import Vmalloc
from simcore.kernel.vmalloc.vmap_area import (
    KVA_END,
    KVA_START,
    MAX_VA_SIZE_PAGES,
    POOL_DECAY_SHIFT,
    VMAP_ZONE_SHIFT,
    rb_depth,
)
from simcore.kernel.vmalloc.vmap_block import (
    BITS_PER_LONG,
    NR_CPUS,
    VMALLOC_PAGES,
    VMALLOC_SPACE,
    VMAP_BBMAP_BITS,
    VMAP_BBMAP_BITS_MAX,
    VMAP_BBMAP_BITS_MIN,
    VMAP_BLOCK_SIZE,
    VMAP_MAX_ALLOC,
    VMAP_PURGE_THRESHOLD,
    VmapBlock,
    vmap_bbmap_bits,
)
from simcore.kernel.vmalloc.vread import (
    COPY_PAGE_FACTOR,
    PAGE_WALK_LOADS,
    SEQ_BUF_BYTES,
    SEQ_LINE_NS,
    VreadResult,
)

__all__ = [
    "BITS_PER_LONG",
    "COPY_PAGE_FACTOR",
    "KVA_END",
    "KVA_START",
    "MAX_VA_SIZE_PAGES",
    "NR_CPUS",
    "PAGE_WALK_LOADS",
    "POOL_DECAY_SHIFT",
    "SEQ_BUF_BYTES",
    "SEQ_LINE_NS",
    "VMALLOC_PAGES",
    "VMALLOC_SPACE",
    "VMAP_BBMAP_BITS",
    "VMAP_BBMAP_BITS_MAX",
    "VMAP_BBMAP_BITS_MIN",
    "VMAP_BLOCK",
    "VMAP_BLOCK_SIZE",
    "VMAP_MAX_ALLOC",
    "VMAP_PURGE_THRESHOLD",
    "VMAP_RAM",
    "VMAP_ZONE_SHIFT",
    "VM_ALLOC",
    "VM_ALLOW_HUGE_VMAP",
    "VM_DMA_COHERENT",
    "VM_FLUSH_RESET_PERMS",
    "VM_IOREMAP",
    "VM_MAP",
    "VM_NO_GUARD",
    "VM_NO_HUGE_VMAP",
    "VM_SPARSE",
    "VM_USERMAP",
    "VmArea",
    "Vmalloc",
    "VmapBlock",
    "VreadResult",
    "vmap_bbmap_bits",
    "rb_depth",
]
