"""kernel/bpf/: the BPF JIT's memory side."""
