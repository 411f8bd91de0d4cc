"""Reading a real ``/proc/vmstat`` capture.

``vmstat_show()`` (mm/vmstat.c) prints one counter per line, its name from
``vmstat_text[]`` and its value, with no unit::

    nr_free_pages 92304847
    nr_page_table_pages 26145
    direct_map_level2_splits 3074
    direct_map_level3_splits 21

Page counts are in pages, except ``nr_kernel_stack`` and
``nr_shadow_call_stack`` (kB). The counters the model uses:

- ``nr_free_pages`` (``NR_FREE_PAGES``): free pages in the buddy lists,
  what the page allocator starts with unless a /proc/buddyinfo capture
  gives the free blocks themselves;
- ``nr_page_table_pages``: page-table pages of every mm (user tables
  included), for comparison;
- ``direct_map_level2_splits`` / ``direct_map_level3_splits`` and their
  ``_collapses`` (x86): the host's direct-map splits since boot, shown
  beside the split a /proc/meminfo capture sets.

(The pages vmalloc'ed are not a vmstat counter: /proc/meminfo's
``VmallocUsed`` has them, ``vmalloc_nr_pages()``.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from simcore.errors import CaptureError
from simcore.kernel.procfs import counter_lines, read_capture

_LINE = re.compile(r"^([a-z0-9_]+)\s+(-?\d+)\s*$")
_EXPECTED = "'<counter name> <number>', as /proc/vmstat prints them"


@dataclass
class VmStat:
    file: str
    values: dict[str, int] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def get(self, name: str) -> int | None:
        return self.values.get(name)


def parse_vmstat(text: str, file: str = "<vmstat>") -> VmStat:
    """Parse the text of a /proc/vmstat capture; blank lines are skipped,
    anything else that is not a counter line raises :class:`CaptureError`."""
    info = VmStat(file=file)
    for no, m in counter_lines(text, file, _LINE, "/proc/vmstat", _EXPECTED):
        info.values[m.group(1)] = int(m.group(2))
        info.lines[m.group(1)] = no
    free = info.values.get("nr_free_pages")
    if free is None or free < 0:
        raise CaptureError(
            "no nr_free_pages line" if free is None else "nr_free_pages is negative",
            file=file,
            line=info.lines.get("nr_free_pages"),
            expected="the whole of /proc/vmstat",
        )
    return info


def load_vmstat(path: str | Path) -> VmStat:
    text = read_capture(path, "vmstat", "cat /proc/vmstat", _EXPECTED)
    return parse_vmstat(text, file=str(path))
