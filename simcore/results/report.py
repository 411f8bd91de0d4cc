"""``simcore report``: re-render results folders without simulating."""

from __future__ import annotations

import json
from pathlib import Path

from simcore.errors import ConfigError
from simcore.results.charts import render_charts
from simcore.results.summary import render_summary
from simcore.results.writer import load_config_yaml, meta_from_config, read_latency_csv


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


def report(folders: list[Path]) -> str:
    """Summary of one folder (charts redrawn in place), or several side by side."""
    loaded = [_load(f) for f in folders]
    if len(folders) == 1:
        doc, cfg = loaded[0]
        render_charts(
            doc, read_latency_csv(folders[0] / "latency.csv"), folders[0], cfg["name"]
        )
        text = render_summary(doc, meta_from_config(cfg))
        (folders[0] / "summary.txt").write_text(text, encoding="utf-8")
        return text
    # several folders: each folder's strategies become columns "dir:strategy"
    merged = {
        "simcore_version": loaded[0][0]["simcore_version"],
        "seed": loaded[0][0]["seed"],
        "config_hash": "+".join(d["config_hash"][:6] for d, _ in loaded),
        "strategies": {},
    }
    labels = [f.resolve().name for f in folders]
    if len(set(labels)) < len(labels):
        labels = [f"{i + 1}.{lb}" for i, lb in enumerate(labels)]
    for label, (doc, _) in zip(labels, loaded, strict=True):
        for s, m in doc["strategies"].items():
            merged["strategies"][f"{label}:{s}"] = m
    return render_summary(merged, meta_from_config(loaded[0][1]))
