"""`simcore report --format html`: one self-contained page.

The page is parsed with the standard library's HTML parser and must load
nothing from outside itself. Where a Chromium binary exists (Debian's
``chromium``), it also renders the page headless and the charts must take
up space on screen; elsewhere that test is skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from simcore.results import charts
from simcore.results.html.svg import inline_svg
from simcore.results.html.validation import NOT_RUN, find_validation
from simcore.results.provenance import profile_values

# attributes through which a page loads something
_LOADING = {"src", "href", "xlink:href", "srcset", "poster", "data", "action"}
_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []
        self.svgs = 0
        self.style = ""
        self._in_style = False
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.svgs += tag == "svg"
        self._in_style = tag == "style"
        for k, v in attrs:
            if k in _LOADING and v is not None:
                self.refs.append(v)
            if k == "style" and v:
                self.refs += _URL.findall(v)

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data
        self.text += data


def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _as_skylake(folder: Path) -> None:
    """A golden copy on a profile that ships, so provenance has values."""
    cfg = folder / "config.yaml"
    cfg.write_text(cfg.read_text().replace("sapphire-rapids-2s", "skylake-sp"))


def _fake_validation(root: Path, run: str, cases: dict, quick=False) -> Path:
    folder = root / run
    folder.mkdir(parents=True)
    doc = {"simcore_version": "0.1.0", "quick": quick, "summary": "x", "cases": cases}
    (folder / "results.json").write_text(json.dumps(doc))
    return folder


CASE = {
    "status": "pass",
    "independent": True,
    "published": 1.0,
    "simulated": 1.1,
    "criterion": {"text": "ratio within x1.5"},
    "profiles": ["skylake-sp"],
    "presets": ["6.9"],
    "source": {"ref": "msg@example.org"},
    "title": "a toy case",
}


def _report(cli, folders: list[Path], *extra: str) -> Path:
    code, out, err = cli("report", *map(str, folders), "--format", "html", *extra)
    assert code == 0, err
    path = Path(out.strip())
    assert path == folders[0] / "report.html" and path.is_file()
    return path


def test_page_is_self_contained_with_inline_charts(
    cli, case_copy, tmp_path, monkeypatch
):
    folder = case_copy("two-strategies")
    _as_skylake(folder)
    monkeypatch.chdir(tmp_path)  # no results/validate to find here
    page = _parse(_report(cli, [folder]))
    external = [r for r in page.refs if not r.startswith("#")]
    assert not external, external
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(page.tags)
    assert "@import" not in page.style and "url(" not in page.style
    drawn = [s for s in charts.CHARTS if (folder / f"{s}.svg").is_file()]
    assert page.svgs == len(drawn) >= 5
    # the table, headline first, the config and where the constants come from
    assert page.text.index("Headline") < page.text.index("iTLB misses")
    assert "programs: 5000" in page.text
    first = profile_values("skylake-sp")[0]
    assert first.path in page.text and first.source in page.text
    assert "vmap_locking" in page.text  # preset 6.9's knobs
    assert NOT_RUN in page.text


def test_several_folders_make_one_page_in_the_first(cli, case_copy, monkeypatch):
    a = case_copy("one-strategy", "a")
    b = case_copy("two-strategies", "b")
    monkeypatch.chdir(a)
    path = _report(cli, [a, b])
    assert not (b / "report.html").exists()
    page = _parse(path)
    assert page.svgs >= 5
    assert "a:module_alloc" in page.text and "b:bpf_prog_pack" in page.text


def test_validation_status_of_the_cases_on_the_runs_profile(cli, case_copy, tmp_path):
    folder = case_copy("two-strategies")
    _as_skylake(folder)
    other = dict(CASE, profiles=["zen3-milan"], presets=["6.1"], title="elsewhere")
    vdir = tmp_path / "validate"
    _fake_validation(vdir, "20260101-000000-aaaaaa", {"toy": CASE, "far": other})
    text = _report(cli, [folder], "--validation", str(vdir)).read_text()
    assert "a toy case" in text and '<span class="pass">pass</span>' in text
    assert "elsewhere" not in text  # ran on another profile and preset
    assert NOT_RUN not in text


def test_newest_full_run_of_each_case_wins(tmp_path):
    root = tmp_path / "validate"
    _fake_validation(root, "20260101-000000-aaaaaa", {"a": CASE, "b": CASE})
    _fake_validation(root, "20260102-000000-aaaaaa", {"a": dict(CASE, status="fail")})
    _fake_validation(
        root, "20260103-000000-aaaaaa-quick", {"b": dict(CASE, status="error")},
        quick=True,
    )  # fmt: skip
    (root / "20260104-broken").mkdir()
    (root / "20260104-broken" / "results.json").write_text("{not json")
    v = find_validation([], root)
    assert v is not None
    assert v.cases["a"]["status"] == "fail"  # the later full run
    assert v.cases["b"]["status"] == "pass"  # a quick run does not override
    assert v.touching({"skylake-sp"}, set()) == ["a", "b"]
    assert v.fitted_cases(("msg@example.org",)) == ["a", "b"]
    assert find_validation([], tmp_path / "nothing") is None


def test_inline_svg_drops_the_prolog_and_keeps_ids_apart():
    svg = (
        '<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "x" "http://w3.org/dtd">\n'
        '<svg xmlns:xlink="http://www.w3.org/1999/xlink" xmlns="http://www.w3.org/2000/svg">'
        "<metadata><rdf:RDF>http://purl.org</rdf:RDF></metadata>"
        '<path id="p1"/><use xlink:href="#p1"/><g clip-path="url(#p1)"/></svg>'
    )
    out = inline_svg(svg, "c3")
    assert out.startswith("<svg") and "http" not in out
    assert 'id="c3-p1"' in out and 'href="#c3-p1"' in out and "url(#c3-p1)" in out


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


# written into a copy of the page only: the report itself has no script
_MEASURE = """<script>
const out = [...document.querySelectorAll("figure svg")].map(s => {
  const r = s.getBoundingClientRect(); return [r.width, r.height]; });
const pre = document.createElement("pre"); pre.id = "chart-sizes";
pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
</script>"""


@pytest.mark.skipif(
    _chromium() is None,
    reason="no Chromium binary (Debian package chromium) to render the page",
)
def test_browser_draws_every_chart_with_a_size(cli, case_copy, tmp_path):
    browser = _chromium()
    folder = case_copy("two-strategies")
    path = _report(cli, [folder])
    probe = tmp_path / "probe.html"
    probe.write_text(path.read_text().replace("</body>", _MEASURE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,2400"]
    run = subprocess.run(
        [browser, *flags, "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    found = re.search(r'<pre id="chart-sizes">(.*?)</pre>', run.stdout)
    assert found, run.stderr[-2000:]
    sizes = json.loads(found.group(1))
    assert len(sizes) == _parse(path).svgs >= 5
    assert all(w > 100 and h > 100 for w, h in sizes), sizes
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", path.as_uri()],
        capture_output=True,
        timeout=180,
        check=False,
    )
    img = mpimg.imread(shot)[..., :3]
    assert img.min() < 0.3 and img.max() > 0.9  # ink on paper, not a blank page
