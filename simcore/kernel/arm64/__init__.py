"""arch/arm64: what the arm64 kernel does differently from x86 below the
same calls. ``mmu.py`` is arch/arm64/mm/mmu.c (the linear map's layout),
``pageattr.py`` arch/arm64/mm/pageattr.c (``set_memory_*()``),
``patching.py`` arch/arm64/kernel/patching.c with jump_label.c. The
kernel chooses them by the profile's ``arch`` (:mod:`simcore.kernel.main`).
"""
