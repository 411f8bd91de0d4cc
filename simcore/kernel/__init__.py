"""The modelled kernel; each file mirrors the kernel's own.

``page_alloc.py``, ``buddy.py`` and ``buddy_seed.py`` are mm/page_alloc.c
(``mmzone.py`` its header), ``vmalloc/`` is mm/vmalloc.c, ``util.py``
mm/util.c, ``execmem.py`` mm/execmem.c; ``pgtable.py``, ``directmap.py``
and ``set_memory.py`` are arch/x86/mm (``pgtable_types.py`` its header),
``alternative.py`` arch/x86/kernel/alternative.c, ``module.py``
kernel/module, ``bpf/`` kernel/bpf, and ``main.py`` (init/main.c) brings
them up as one :class:`~simcore.kernel.main.Kernel`.

Layer: above ``hw`` and the ground, below ``strategies``. Mechanisms never
know policies: the kernel defines the interfaces (``ExecAllocator``, the
arena hooks) and the engine plugs a strategy in; nothing here imports
``strategies``, ``workloads`` or ``engine``.
"""
