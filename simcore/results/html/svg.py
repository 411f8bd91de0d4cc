"""Charts as inline SVG.

The SVG files matplotlib writes are documents of their own: an XML
declaration, a DOCTYPE naming a DTD by URL, namespace declarations, RDF
metadata naming more URLs, and element ids (``figure_1``, the glyphs of
each font) that every chart repeats. Inside one HTML page the declaration,
DOCTYPE, namespaces (an HTML parser knows SVG's own) and metadata go, and
each chart's ids get a prefix of their own, so a reference inside one
chart never lands in another.
"""

from __future__ import annotations

import re
from pathlib import Path

from simcore.results.html.page import esc

_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
# an HTML parser puts <svg> and xlink:href in their namespaces itself
_XMLNS = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(href="#|url\(#)([^")]+)')


def inline_svg(text: str, prefix: str) -> str:
    """One SVG file's markup, ready to sit in an HTML body."""
    svg = _METADATA.sub("", _PROLOG.sub("", text, count=1))
    svg = _XMLNS.sub("", svg, count=2)
    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = _REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)
    return svg.strip()


def charts_html(folder: Path) -> str:
    """Every chart of a results folder, in the order the folder lists
    them, as figures with the chart's description as caption."""
    # the chart list lives with the drawing code: imported here, so that
    # loading the HTML report module does not load matplotlib
    from simcore.results.charts import CHARTS

    figs = []
    for i, (stem, what) in enumerate(CHARTS.items()):
        path = folder / f"{stem}.svg"
        if not path.is_file():
            continue  # the run had nothing to draw there
        svg = inline_svg(path.read_text(encoding="utf-8"), f"c{i}")
        figs.append(
            f'<figure id="chart-{esc(stem)}">{svg}'
            f"<figcaption>{esc(what)}</figcaption></figure>"
        )
    return "\n".join(figs) or '<p class="note">no charts: nothing to draw</p>'
