"""Reading a real ``/proc/meminfo`` capture.

``meminfo_proc_show()`` (fs/proc/meminfo.c) prints one counter per line,
``Name:`` then the value, in kB for every memory amount::

    MemTotal:       527946068 kB
    MemFree:        361042716 kB
    VmallocUsed:       295384 kB
    PageTables:        104580 kB
    DirectMap4k:      1316664 kB
    DirectMap2M:     45766656 kB
    DirectMap1G:    490733568 kB

``HugePages_Total`` and its neighbours are counts without a unit. The
``DirectMap`` lines come from ``arch_report_meminfo()``
(arch/x86/mm/pat/set_memory.c): ``direct_pages_count[]`` per page size,
what the direct map's 4 KiB, 2 MiB and 1 GiB leaves cover. Other
architectures print none (arm64 never splits its linear map on demand).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from simcore.errors import CaptureError
from simcore.kernel.procfs import counter_lines, read_capture

_LINE = re.compile(r"^([A-Za-z0-9_()]+):\s+(\d+)(?:\s+(kB))?\s*$")
_EXPECTED = "'Name:   <number> kB' (or a bare count), as /proc/meminfo prints them"
DIRECT_MAP = ("DirectMap4k", "DirectMap2M", "DirectMap1G")


@dataclass
class MemInfo:
    """The counters of a capture: amounts in bytes, counts as given."""

    file: str
    values: dict[str, int] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)  # name -> line number

    def get(self, name: str) -> int | None:
        return self.values.get(name)

    def direct_map(self) -> tuple[int, int, int] | None:
        """DirectMap4k, DirectMap2M, DirectMap1G in bytes (a missing 1G line,
        as kernels without GB-page support print, counts 0), or None when
        the capture has none of them."""
        if not any(k in self.values for k in DIRECT_MAP):
            return None
        b4, b2, b1 = (self.values.get(k, 0) for k in DIRECT_MAP)
        return b4, b2, b1


def parse_meminfo(text: str, file: str = "<meminfo>") -> MemInfo:
    """Parse the text of a /proc/meminfo capture; blank lines are skipped,
    anything else that is not a counter line raises :class:`CaptureError`."""
    info = MemInfo(file=file)
    for no, m in counter_lines(text, file, _LINE, "/proc/meminfo", _EXPECTED):
        name, value = m.group(1), int(m.group(2))
        info.values[name] = value * 1024 if m.group(3) else value
        info.lines[name] = no
    if "MemTotal" not in info.values:
        raise CaptureError(
            "no MemTotal line", file=file, expected="the whole of /proc/meminfo"
        )
    dm = info.direct_map()
    if dm is not None:
        for name, b in zip(DIRECT_MAP, dm, strict=True):
            if b % 4096:
                raise CaptureError(
                    f"{name} is not a whole number of 4 kB pages",
                    file=file,
                    line=info.lines.get(name),
                    expected=_EXPECTED,
                )
    return info


def load_meminfo(path: str | Path) -> MemInfo:
    text = read_capture(path, "meminfo", "cat /proc/meminfo", _EXPECTED)
    return parse_meminfo(text, file=str(path))
