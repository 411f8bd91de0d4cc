"""Charts for a results folder, PNG and SVG, readable in grey-scale.

Strategies are told apart by hatching and line style as well as colour, so
a chart survives a black-and-white printout or a colour-blind reader.
Rendered from the files of the results folder only (``simcore report``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo")
STYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1)))
GREYS = ("0.15", "0.45", "0.65", "0.3", "0.55", "0.8")

plt.rcParams.update({"svg.hashsalt": "simcore", "font.size": 9})


def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{stem}.{ext}"
        # fixed metadata keeps SVG output stable between runs
        fig.savefig(p, dpi=110, metadata={"Date": None} if ext == "svg" else None)
        paths.append(p)
    plt.close(fig)
    return paths


def lock_wait_chart(doc: dict, out: Path, title: str) -> list[Path]:
    strategies = list(doc["strategies"])
    locks = sorted(
        {
            k[5:-8]
            for s in strategies
            for k in doc["strategies"][s]
            if k.startswith("lock.") and k.endswith(".wait_ns")
        }
    )
    fig, ax = plt.subplots(figsize=(7, 3.6))
    if not locks:
        ax.text(0.5, 0.5, "no kernel lock was taken", ha="center", va="center")
    width = 0.8 / max(1, len(strategies))
    for i, s in enumerate(strategies):
        vals = [doc["strategies"][s].get(f"lock.{lk}.wait_ns", 0) / 1e6 for lk in locks]
        xs = [j + i * width for j in range(len(locks))]
        ax.bar(
            xs,
            vals,
            width,
            label=s,
            color=GREYS[i % len(GREYS)],
            hatch=HATCHES[i % len(HATCHES)],
            edgecolor="black",
            linewidth=0.6,
        )
    ax.set_xticks([j + width * (len(strategies) - 1) / 2 for j in range(len(locks))])
    ax.set_xticklabels(locks, rotation=15, ha="right")
    ax.set_ylabel("total wait, all CPUs (ms)")
    ax.set_title(title)
    if strategies and locks:
        ax.legend(frameon=False)
    fig.tight_layout()
    return _save(fig, out, "lock_wait")


def latency_cdf_chart(
    cdfs: dict[str, dict[str, list]], out: Path, title: str
) -> list[Path]:
    """``cdfs``: strategy -> op -> [(latency ns, cumulative fraction)]."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    k = 0
    for s, ops in cdfs.items():
        for op, pts in ops.items():
            if not pts:
                continue
            xs = [p[0] / 1e3 for p in pts]
            ys = [p[1] for p in pts]
            ax.step(
                xs,
                ys,
                where="post",
                label=f"{op} ({s})",
                linestyle=STYLES[k % len(STYLES)],
                color=GREYS[k % len(GREYS)],
            )
            k += 1
    ax.set_xscale("log")
    ax.set_xlabel("latency (us, log scale)")
    ax.set_ylabel("fraction of operations")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    if k:
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return _save(fig, out, "latency_cdf")


def render_charts(doc: dict, cdfs: dict, out: Path, name: str) -> list[Path]:
    paths = lock_wait_chart(doc, out, f"{name}: where do CPUs wait for kernel locks?")
    paths += latency_cdf_chart(cdfs, out, f"{name}: how long do allocations take?")
    return paths
