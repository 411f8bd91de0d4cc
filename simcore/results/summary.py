"""summary.txt: strategies side by side in at most 80 columns.

Rendered from ``metrics.json`` alone so ``simcore report`` can redo it
without simulating. Like ``perf stat`` output it is meant to be pasted into
a mail: fixed width, no tabs, numbers in the units people say out loud, and
a footer that lets anyone rerun the exact configuration.
"""

from __future__ import annotations

from simcore.results.catalog import lookup
from simcore.results.fmt import delta, human

WIDTH = 80
_ORDER = (
    "tlb",
    "itlb",
    "dtlb",
    "stlb",
    "pagewalk",
    "cpu",
    "directmap",
    "lock",
    "alloc",
    "mem",
    "vmap",
    "vmalloc",
    "workload",
    "sim",
)


def _group(name: str) -> tuple[str, str]:
    parts = name.split(".")
    if parts[0] in ("lock", "alloc") and len(parts) > 2:
        return ".".join(parts[:2]), ".".join(parts[2:])
    return parts[0], ".".join(parts[1:]) or parts[0]


def _sort_key(name: str) -> tuple[int, str]:
    head = name.split(".")[0]
    return (_ORDER.index(head) if head in _ORDER else len(_ORDER), name)


def _wrap_name(name: str, width: int) -> list[str]:
    """Split a strategy name at underscores to fit a column."""
    lines, cur = [], ""
    for part in name.split("_"):
        piece = part if not cur else f"{cur}_{part}"
        if len(piece) <= width:
            cur = piece
        else:
            if cur:
                lines.append(cur + "_")
            cur = part
            while len(cur) > width:
                lines.append(cur[:width])
                cur = cur[width:]
    lines.append(cur)
    return lines


def render_summary(doc: dict, meta: dict) -> str:
    """``doc`` is metrics.json; ``meta`` adds name, profile, cpus, preset, duration."""
    strategies = list(doc["strategies"])
    n = len(strategies)
    show_delta = 1 < n <= 3
    vw, dw = 11, 8
    cols = vw + (vw + dw) * (n - 1) if show_delta else vw * n
    label_w = WIDTH - cols - 1
    out: list[str] = []
    title = (
        f"{meta['name']}: {meta['cpus']} CPUs {meta['profile']}, kernel "
        f"{meta['preset']}, {meta['duration']} simulated"
    )
    out.append(title[:WIDTH])
    if n > 1:
        out.append(f"change: relative to {strategies[0]} (first strategy)"[:WIDTH])
    out.append("")
    # header, names wrapped over as many lines as the longest needs
    wrapped = [_wrap_name(s, vw - 1) for s in strategies]
    depth = max(len(w) for w in wrapped)
    for row in range(depth):
        line = " " * (label_w + 1)
        for i, w in enumerate(wrapped):
            pad = depth - len(w)
            text = w[row - pad] if row >= pad else ""
            line += text.rjust(vw)
            if show_delta and i > 0:
                line += ("change" if row == depth - 1 else "").rjust(dw)
        out.append(line.rstrip())
    out.append("-" * WIDTH)
    names = sorted({k for s in strategies for k in doc["strategies"][s]}, key=_sort_key)
    current = None
    for name in names:
        group, label = _group(name)
        if group != current:
            out.append(group[:WIDTH])
            current = group
        info = lookup(name)
        unit = info.unit if info else "count"
        label = "  " + label
        if len(label) > label_w:
            label = label[: label_w - 1] + "~"
        line = label.ljust(label_w + 1)
        base = doc["strategies"][strategies[0]].get(name)
        for i, s in enumerate(strategies):
            v = doc["strategies"][s].get(name)
            line += (human(v, unit) if v is not None else "-").rjust(vw)
            if show_delta and i > 0:
                d = delta(v, base) if v is not None and base is not None else ""
                line += d.rjust(dw)
        out.append(line.rstrip())
    out.append("-" * WIDTH)
    foot = (
        f"simcore {doc['simcore_version']}, profile {meta['profile']}, kernel "
        f"{meta['preset']}, seed {doc['seed']}, {meta['duration']}, "
        f"config {doc['config_hash']}"
    )
    out.extend(_wrap_words(foot, WIDTH))
    return "\n".join(out) + "\n"


def _wrap_words(text: str, width: int) -> list[str]:
    lines, cur = [], ""
    for word in text.split(" "):
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    lines.append(cur)
    return lines
