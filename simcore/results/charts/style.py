"""The look every chart shares, and saving it.

Grey shades, hatches, line styles and markers that tell strategies apart
in grey-scale; the non-interactive pyplot backend; axis units that keep
numbers readable; and byte-stable PNG + SVG output (a fixed
``svg.hashsalt`` for element ids, no date in the metadata).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo")
STYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1)))
GREYS = ("0.15", "0.45", "0.65", "0.3", "0.55", "0.8")
MARKERS = ("o", "s", "^", "D", "v", "x")

plt.rcParams.update({"svg.hashsalt": "simcore", "font.size": 9})


def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{stem}.{ext}"
        fig.savefig(p, dpi=110, metadata={"Date": None} if ext == "svg" else None)
        paths.append(p)
    plt.close(fig)
    return paths


def axis_scale(unit: str, peak: float) -> tuple[float, str]:
    """Divisor and unit name that keep an axis in readable numbers."""
    peak = abs(peak)
    if unit == "ns":
        for div, name in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
            if peak >= div:
                return div, name
        return 1.0, "ns"
    if unit == "bytes":
        for div, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if peak >= div:
                return float(div), name
        return 1.0, "bytes"
    if unit == "pct":
        return 1.0, "%"
    for div, name in ((1e9, "billions"), (1e6, "millions"), (1e3, "thousands")):
        if peak >= div:
            return div, name
    return 1.0, unit if unit not in ("count", "") else "count"
