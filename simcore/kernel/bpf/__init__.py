"""kernel/bpf/: the BPF JIT's memory side (``core.py``) and BPF arenas
(``arena.py`` and its parts, ``range_tree.py``)."""
