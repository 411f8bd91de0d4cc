"""``simcore report``: re-render results folders without simulating.

One folder: summary.txt and the charts are redrawn in place from
metrics.json, config.yaml, timeseries.csv and latency.csv. Several folders:
their strategies side by side, printed only. Columns are named after what
differs between the folders' configs (``preset=6.1``, ``cpus=64``), which
is what a reader compares; run ids are only the fallback. ``html`` writes
one self-contained page, ``report.html``, into the first folder
(:mod:`simcore.results.html`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from simcore.errors import ConfigError
from simcore.results.html import RunInfo, find_validation, render_html
from simcore.results.markdown import render_markdown
from simcore.results.summary import (
    Comparison,
    Origin,
    build_comparison,
    render_json,
    render_text,
)
from simcore.results.writer import (
    load_config_yaml,
    meta_from_config,
    read_latency_csv,
    read_timeseries_csv,
)

# the knobs an RFC comparison usually turns, in the order labels name them
_PRIORITY = (
    "kernel.preset",
    "machine.profile",
    "machine.cpus",
    "duration",
    "seed",
    "name",
)
_MAX_KEYS = 2


def _load(folder: Path) -> tuple[dict, dict]:
    if (
        not (folder / "metrics.json").is_file()
        or not (folder / "config.yaml").is_file()
    ):
        raise ConfigError(
            "not a results folder",
            file=str(folder),
            expected="a folder with metrics.json and config.yaml from `simcore run`",
        )
    doc = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    return doc, load_config_yaml(folder)


def _flatten(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    if isinstance(value, list):
        return {prefix: ",".join(str(v) for v in value)}
    return {prefix: str(value)}


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1].split("[")[0]


def folder_labels(folders: list[Path], cfgs: list[dict]) -> tuple[list[str], str]:
    """A label per folder, and where it came from.

    Labels name the config values that differ (``strategy`` aside: the
    columns show it anyway), source ``"config"``. When more differs than
    fits in a label the folder names are used (numbered if they clash),
    source ``"folder"``; when nothing differs, the same with source
    ``"same"``.
    """
    flats = [_flatten(c) for c in cfgs]
    keys = sorted(set().union(*flats))
    differ = [
        k for k in keys if k != "strategy" and len({f.get(k, "") for f in flats}) > 1
    ]
    chosen = [k for k in _PRIORITY if k in differ][:_MAX_KEYS]
    if not chosen and len(differ) <= _MAX_KEYS:
        chosen = differ
    if chosen:
        labels = [
            ",".join(f"{_short(k)}={f.get(k, '-')}" for k in chosen) for f in flats
        ]
        if len(set(labels)) == len(labels):
            return labels, "config"
    labels = [f.resolve().name for f in folders]
    if len(set(labels)) < len(labels):
        labels = [f"{i + 1}.{lb}" for i, lb in enumerate(labels)]
    return labels, "folder" if differ else "same"


def _column_names(
    labels: list[str], source: str, strategy_sets: list[list[str]]
) -> list[list[str]]:
    flat = [s for ss in strategy_sets for s in ss]
    if source == "same" and len(set(flat)) == len(flat):
        # the runs differ in nothing but their strategies: name those
        return strategy_sets
    if all(len(ss) == 1 for ss in strategy_sets) and len(set(flat)) == 1:
        return [[lb] for lb in labels]
    return [
        [f"{lb}:{s}" for s in ss] for lb, ss in zip(labels, strategy_sets, strict=True)
    ]


def _merge(folders: list[Path], loaded: list[tuple[dict, dict]]):
    """One metrics.json of several folders, its columns renamed; with the
    folders' origins and each folder's column names."""
    labels, source = folder_labels(folders, [c for _, c in loaded])
    names = _column_names(labels, source, [list(d["strategies"]) for d, _ in loaded])
    merged: dict = {
        "simcore_version": loaded[0][0]["simcore_version"],
        "seed": loaded[0][0]["seed"],
        "config_hash": "+".join(d["config_hash"][:6] for d, _ in loaded),
        "strategies": {},
    }
    reps: dict = {}
    origins = []
    for folder, label, cols, (doc, cfg) in zip(
        folders, labels, names, loaded, strict=True
    ):
        for col, (s, m) in zip(cols, doc["strategies"].items(), strict=True):
            merged["strategies"][col] = m
            if s in doc.get("replications", {}):
                reps[col] = doc["replications"][s]
        origins.append(
            Origin(label, doc, meta_from_config(cfg), folder=folder.resolve().name)
        )
    if reps:
        merged["replications"] = reps
    return merged, origins, names


def _comparison(
    folders: list[Path], loaded: list[tuple[dict, dict]], show_all: bool
) -> Comparison:
    if len(folders) == 1:
        doc, cfg = loaded[0]
        return build_comparison(doc, meta_from_config(cfg), show_all=show_all)
    merged, origins, _ = _merge(folders, loaded)
    return build_comparison(merged, origins[0].meta, origins=origins, show_all=show_all)


def render_folders(
    folders: list[Path], fmt: str = "text", *, show_all: bool = False
) -> str:
    """The summary of one folder, or of several side by side; no side effects.
    ``show_all`` keeps the rows that are zero in every column."""
    loaded = [_load(f) for f in folders]
    return render(_comparison(folders, loaded, show_all), fmt)


def _redraw(folder: Path, doc: dict, cfg: dict) -> None:
    """summary.txt and the charts of one folder, from its files."""
    from simcore.results.charts import render_charts

    render_charts(
        doc,
        folder,
        cfg["name"],
        cdfs=read_latency_csv(folder / "latency.csv"),
        series=read_timeseries_csv(folder / "timeseries.csv"),
    )
    text = render(build_comparison(doc, meta_from_config(cfg)), "text")
    (folder / "summary.txt").write_text(text, encoding="utf-8")


def report(
    folders: list[Path],
    fmt: str = "text",
    *,
    show_all: bool = False,
    validation: Path | None = None,
) -> str:
    """Like :func:`render_folders`; a single folder also gets its
    summary.txt (always without the all-zero rows) and charts redrawn in
    place. ``html`` writes report.html into the first folder and returns
    its path; ``validation`` names the ``simcore validate`` output it shows
    (found under results/validate when not given)."""
    loaded = [_load(f) for f in folders]
    if len(folders) == 1:
        _redraw(folders[0], *loaded[0])
    if fmt == "html":
        return f"{_write_html(folders, loaded, show_all, validation)}\n"
    return render(_comparison(folders, loaded, show_all), fmt)


def _merged_curves(
    folders: list[Path], docs: list[dict], names: list[list[str]], file: str, read
) -> dict:
    """One csv of every folder (``read`` parses it), keyed by the merged
    column names."""
    out: dict = {}
    for folder, doc, cols in zip(folders, docs, names, strict=True):
        per = read(folder / file)
        for col, s in zip(cols, doc["strategies"], strict=True):
            if s in per:
                out[col] = per[s]
    return out


def _write_html(
    folders: list[Path],
    loaded: list[tuple[dict, dict]],
    show_all: bool,
    validation: Path | None,
) -> Path:
    comp = _comparison(folders, loaded, show_all)
    if len(folders) == 1:
        labels = [folders[0].resolve().name]
    else:
        labels, _ = folder_labels(folders, [c for _, c in loaded])
    runs = [
        RunInfo(lb, cfg, (f / "config.yaml").read_text(encoding="utf-8"))
        for lb, f, (_, cfg) in zip(labels, folders, loaded, strict=True)
    ]
    found = find_validation(folders, validation)
    if len(folders) == 1:
        page = render_html(comp, folders[0], runs, found)
    else:
        merged, _, names = _merge(folders, loaded)
        docs = [d for d, _ in loaded]
        from simcore.results.charts import render_charts

        with tempfile.TemporaryDirectory() as tmp:
            render_charts(
                merged,
                Path(tmp),
                comp.title.split(":")[0],
                cdfs=_merged_curves(
                    folders, docs, names, "latency.csv", read_latency_csv
                ),
                series=_merged_curves(
                    folders, docs, names, "timeseries.csv", read_timeseries_csv
                ),
            )
            page = render_html(comp, Path(tmp), runs, found)
    target = folders[0] / "report.html"
    tmp_file = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp_file.write_text(page, encoding="utf-8")
    os.replace(tmp_file, target)  # never a half-written page
    return target


def render(comp: Comparison, fmt: str = "text") -> str:
    """``fmt``: text (summary.txt), markdown or json; html is a file of
    its own (:func:`report`)."""
    if fmt == "text":
        return render_text(comp)
    if fmt == "markdown":
        return render_markdown(comp)
    if fmt == "json":
        return render_json(comp)
    raise ValueError(f"unknown format {fmt!r}")
