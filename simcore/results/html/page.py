"""The page around the report: escaping, the style sheet, the contents.

Everything the page needs is in the file: the style sheet is inline, fonts
are the reader's own (``system-ui``, ``monospace``), charts are inline SVG
and links only point inside the page. A report attached to a mail or a
bug opens the same offline, years later, as it did when it was written.
"""

from __future__ import annotations

from html import escape

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 72em;
       padding: 0 1em; color: #222; line-height: 1.35; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #bbb; }
h3 { font-size: 1em; margin-top: 1.2em; }
nav { font-size: 0.9em; }
nav a { margin-right: 1em; }
p.note { color: #555; font-size: 0.9em; margin: 0.2em 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em;
        max-width: 100%; }
th, td { padding: 0.15em 0.6em; border-bottom: 1px solid #e4e4e4;
         vertical-align: top; overflow-wrap: break-word; }
th { text-align: left; background: #f4f4f4; }
td.num { text-align: right; font-family: monospace; white-space: nowrap; }
tr.section th { background: #e8e8e8; }
tr.group td { font-style: italic; }
tr.headline td { font-weight: 600; }
td.key, td.nowrap { white-space: nowrap; }
td.val { text-align: right; font-family: monospace; }
td.source { min-width: 20em; }
td.refs { min-width: 10em; overflow-wrap: anywhere; }
.better { color: #176117; }
.worse { color: #a11d1d; }
.ns { color: #777; }
.pass { color: #176117; font-weight: 600; }
.fail { color: #a11d1d; font-weight: 600; }
.error { color: #8a5a00; font-weight: 600; }
figure { margin: 1em 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #444; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
"""


def esc(value: object) -> str:
    """Text as HTML, quotes included (it also goes into attributes)."""
    return escape(str(value), quote=True)


def table(head: list[str], rows: list[str], cls: str = "") -> str:
    """A table of ``rows`` (each a ready ``<tr>``) under a header row."""
    ths = "".join(f"<th>{esc(h)}</th>" for h in head)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def page(title: str, intro: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: ``sections`` are (anchor, heading, body html)."""
    nav = " ".join(f'<a href="#{esc(a)}">{esc(h)}</a>' for a, h, _ in sections)
    body = "\n".join(
        f'<section id="{esc(a)}"><h2>{esc(h)}</h2>\n{html}\n</section>'
        for a, h, html in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n{intro}\n<nav>{nav}</nav>\n{body}\n"
        "</body>\n</html>\n"
    )
