"""Reading captures of /proc files: the text, and the counter lines that
/proc/meminfo (fs/proc/meminfo.c ``meminfo_proc_show()``) and /proc/vmstat
(mm/vmstat.c ``vmstat_show()``) print one per line, so that every capture
parser fails the same way: file, line, what a line should look like."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from simcore.errors import CaptureError


def read_capture(path: str | Path, what: str, how: str | None, expected: str) -> str:
    """The text of a capture file, or a CaptureError saying why not;
    ``how`` is the command that takes it, if there is one."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CaptureError(
            f"cannot read {what} capture: {exc.strerror}",
            file=str(p),
            expected=f"a file saved from `{how}`" if how else expected,
        ) from None
    except UnicodeDecodeError:
        raise CaptureError(
            f"{what} capture is not text", file=str(p), expected=expected
        ) from None


def counter_lines(
    text: str, file: str, line: re.Pattern[str], what: str, expected: str
) -> Iterator[tuple[int, re.Match[str]]]:
    """(line number, match) of each non-blank line of a counter file, whose
    group 1 is the counter's name; a line that does not match, or names a
    counter a second time, raises CaptureError."""
    seen: set[str] = set()
    for no, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        m = line.match(stripped)
        if m is None:
            raise CaptureError(
                f"not a {what} line: {stripped[:60]!r}",
                file=file,
                line=no,
                expected=expected,
            )
        if m.group(1) in seen:
            raise CaptureError(
                f"{m.group(1)} appears twice", file=file, line=no, expected=expected
            )
        seen.add(m.group(1))
        yield no, m
