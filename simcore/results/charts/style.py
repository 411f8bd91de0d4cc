"""The look every chart shares, and saving it.

Grey shades, hatches, line styles and markers that tell strategies apart
in grey-scale; the non-interactive Agg backend; axis units that keep
numbers readable; and byte-stable PNG + SVG output (a fixed
``svg.hashsalt`` for element ids, no date in the metadata).

Charts are plain :class:`~matplotlib.figure.Figure` objects on an Agg
canvas, not pyplot figures: the same pictures, without pyplot's imports
(some hundredths of a second on every run) or its registry of open
figures that each chart would have to be taken out of again. ``plt`` is
still importable from here (loaded on first use) for callers that draw
with pyplot, and :func:`_save` takes their figures too.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede any pyplot import
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo")
STYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1)))
GREYS = ("0.15", "0.45", "0.65", "0.3", "0.55", "0.8")
MARKERS = ("o", "s", "^", "D", "v", "x")

# set once, globally: the sweep and validation charts draw with pyplot
# and rely on the same look
matplotlib.rcParams.update({"svg.hashsalt": "simcore", "font.size": 9})


def __getattr__(name: str):
    if name == "plt":
        import matplotlib.pyplot as plt

        return plt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def subplots(nrows: int = 1, ncols: int = 1, *, figsize, **kwargs):
    """``pyplot.subplots`` without pyplot: the same figure and axes."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def tight_layout(fig, **kwargs) -> None:
    """``fig.tight_layout(**kwargs)``, then :func:`pin_titles`."""
    fig.tight_layout(**kwargs)
    pin_titles(fig)


def pin_titles(fig) -> None:
    """Fix each Axes title at the height it will be drawn at anyway.

    Left automatic, an Axes works the height of its title out again on
    every draw, so once for each of the two formats saved: it measures all
    of its y tick labels to find the axis' offset text ("1e-6", "+1e3")
    and lifts the title above that text where the two would meet. A title
    the layout left at its default height, over a y axis that has no
    offset text, stays there on every draw; an explicit ``y`` then draws
    the same picture without the measuring, about a tenth of the time a
    chart takes. Any other title stays automatic.
    """
    for ax in fig.axes:
        label = ax.get_title()
        if not label or ax.title.get_position()[1] != 1.0:
            continue
        # the offset text the next draw will show, from the ticks it will draw
        fmt = ax.yaxis.get_major_formatter()
        fmt.format_ticks(ax.yaxis.get_majorticklocs())
        if not fmt.get_offset():
            # set_title applies the default title font again, the one the
            # charts here draw their titles in
            ax.set_title(label, y=1.0)


def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{stem}.{ext}"
        fig.savefig(p, dpi=110, metadata={"Date": None} if ext == "svg" else None)
        paths.append(p)
    if fig.canvas.manager is not None:  # a pyplot figure: let pyplot forget it
        import matplotlib.pyplot as plt

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
