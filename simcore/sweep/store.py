"""Per-point results on disk: ``<out>/points/<config hash>.json``.

A point file is written to a temporary name in the same folder, flushed to
disk and renamed over its final name, so a sweep killed at any instant
leaves either the whole file or none of it. Several processes (``--shard``
jobs of a Slurm array) may share one folder: they only ever rename complete
files into place, and the same hash always means the same config.

A file's content depends only on the point's config, never on which
executor, worker or host ran it, so two runs of a sweep give byte-identical
point files.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from simcore._version import __version__
from simcore.sweep.points import Point

# A temporary file this old belongs to a run that was killed mid-write; a
# younger one may be another shard's write in progress.
STALE_TMP_S = 3600


class PointStore:
    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.folder = self.out / "points"

    def path(self, digest: str) -> Path:
        return self.folder / f"{digest}.json"

    def load(self, digest: str) -> dict[str, Any] | None:
        """The stored point, or None if absent or not a point file of this hash."""
        try:
            doc = json.loads(self.path(digest).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError, OSError):
            return None
        if not isinstance(doc, dict) or doc.get("config_hash") != digest:
            return None
        # a hand-edited or foreign file counts as absent: the point reruns
        if doc.get("status") == "ok" and isinstance(doc.get("strategies"), dict):
            return doc
        if doc.get("status") == "failed" and isinstance(doc.get("error"), dict):
            return doc
        return None

    def done(self, digest: str) -> bool:
        doc = self.load(digest)
        return doc is not None and doc.get("status") == "ok"

    def write(self, point: Point, outcome: dict[str, Any]) -> Path:
        doc = point_doc(point, outcome)
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.path(point.config_hash)
        tmp = self.folder / (
            f".{point.config_hash}.{socket.gethostname()}.{os.getpid()}.tmp"
        )
        data = json.dumps(doc, indent=2) + "\n"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.folder)
        return final

    def clean_stale_tmp(self) -> int:
        if not self.folder.is_dir():
            return 0
        now = time.time()
        n = 0
        for p in self.folder.glob(".*.tmp"):
            try:
                if now - p.stat().st_mtime > STALE_TMP_S:
                    p.unlink()
                    n += 1
            except FileNotFoundError:
                continue
        return n


def point_doc(point: Point, outcome: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "simcore_version": __version__,
        "config_hash": point.config_hash,
        "seed": point.seed,
        "replication": point.replication,
        "parameters": point.params,
        "status": outcome["status"],
    }
    if outcome["status"] == "ok":
        doc["strategies"] = outcome["strategies"]
    else:
        doc["error"] = outcome["error"]
    doc["config"] = point.config
    return doc


def _fsync_dir(folder: Path) -> None:
    # the rename is only durable once the directory entry is on disk
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
