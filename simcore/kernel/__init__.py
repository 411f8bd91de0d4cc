"""The modelled kernel; each file mirrors the kernel's own.

``page_alloc.py``/``buddy.py`` is mm/page_alloc.c, ``vmalloc/`` is
mm/vmalloc.c, ``pgtable.py`` and ``set_memory.py`` are arch/x86/mm,
``execmem.py`` is mm/execmem.c, ``alternative.py`` is
arch/x86/kernel/alternative.c, ``module.py`` kernel/module, ``bpf/``
kernel/bpf, and ``main.py`` (init/main.c) brings them up as one
:class:`~simcore.kernel.main.Kernel`.

Layer: above ``hw`` and the ground, below ``strategies``. Mechanisms never
know policies: the kernel defines the interfaces (``ExecAllocator``, the
arena hooks) and the engine plugs a strategy in; nothing here imports
``strategies``, ``workloads`` or ``engine``.
"""
