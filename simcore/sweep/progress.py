"""The sweep's progress bar on stderr: done, failed, remaining, ETA.

Drawn only on a terminal: in a Slurm log or a pipe, carriage-return
redraws turn into thousands of lines.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_REDRAW_S = 0.1


def format_eta(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(
        self,
        total: int,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        width: int = 24,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.total = total
        self.done = 0
        self.failed = 0
        self.width = width
        self._start = time.monotonic()
        self._last = 0.0

    def update(self, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        finished = self.done + self.failed == self.total
        now = time.monotonic()
        if self.enabled and (finished or now - self._last >= _REDRAW_S):
            self._last = now
            self.stream.write("\r" + self.line(now - self._start))
            self.stream.flush()

    def line(self, elapsed: float) -> str:
        finished = self.done + self.failed
        left = self.total - finished
        frac = finished / self.total if self.total else 1.0
        filled = int(self.width * frac)
        bar = "#" * filled + "-" * (self.width - filled)
        if finished and left:
            eta = f"ETA {format_eta(elapsed / finished * left)}"
        elif left:
            eta = "ETA --:--"
        else:
            eta = f"took {format_eta(elapsed)}"
        return (
            f"[{bar}] {self.done} done, {self.failed} failed, {left} left, {eta}"
        ).ljust(79)

    def close(self) -> None:
        if self.enabled and self.total:
            self.stream.write("\n")
            self.stream.flush()
