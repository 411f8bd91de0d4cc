"""Reading a real ``/proc/buddyinfo`` capture.

``/proc/buddyinfo`` is printed by ``frag_show_print()`` in mm/vmstat.c: one
line per populated zone, ``Node <nid>, zone <name>`` followed by
``zone->free_area[order].nr_free`` for every order from 0 to
``MAX_PAGE_ORDER`` (10 on x86-64 and on arm64 with 4 KiB pages), so 11
columns::

    Node 0, zone      DMA      1      1      1      0      2      1      1      0      1      1      3
    Node 0, zone    DMA32   3214   2871   1903    911    407    178     53     16      4      2    601
    Node 0, zone   Normal  22361  13084   6350   1834    506    116     28      7      0      0      0

The counts are free *blocks* of each order (a block of order k is 2^k pages),
not pages. The result seeds the buddy allocator of mm/page_alloc
(:mod:`simcore.kernel.page_alloc`) per NUMA node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from simcore.errors import CaptureError
from simcore.kernel.procfs import read_capture

MAX_PAGE_ORDER = 10  # include/linux/mmzone.h; MAX_ORDER - 1 in older trees
NR_ORDERS = MAX_PAGE_ORDER + 1
# enum zone_type names as zone_names[] in mm/page_alloc.c spells them.
ZONE_NAMES = ("DMA", "DMA32", "Normal", "HighMem", "Movable", "Device")
# Zones a GFP_KERNEL allocation may use (its zonelist walks down from
# ZONE_NORMAL); ZONE_MOVABLE only serves __GFP_MOVABLE requests.
KERNEL_ZONES = ("DMA", "DMA32", "Normal")

_LINE = re.compile(r"^Node\s+(\d+)\s*,\s*zone\s+(\S+)\s+(.*)$")
_EXPECTED = (
    f"'Node <n>, zone <name>' and {NR_ORDERS} free-block counts (orders 0 to "
    f"{MAX_PAGE_ORDER}), as /proc/buddyinfo prints them"
)


@dataclass
class BuddyInfo:
    """Free blocks per order, keyed by (node, zone name), in file order."""

    file: str
    zones: dict[tuple[int, str], tuple[int, ...]] = field(default_factory=dict)

    def nodes(self) -> list[int]:
        return sorted({n for n, _ in self.zones})

    def node_counts(
        self, node: int, zones: tuple[str, ...] = KERNEL_ZONES
    ) -> list[int]:
        """Free blocks per order of ``node`` summed over ``zones``."""
        out = [0] * NR_ORDERS
        for (n, z), counts in self.zones.items():
            if n == node and z in zones:
                for k, c in enumerate(counts):
                    out[k] += c
        return out

    def free_pages(self, node: int, zones: tuple[str, ...] = KERNEL_ZONES) -> int:
        return sum(c << k for k, c in enumerate(self.node_counts(node, zones)))


def parse_buddyinfo(text: str, file: str = "<buddyinfo>") -> BuddyInfo:
    """Parse the text of a /proc/buddyinfo capture.

    Blank lines are skipped. Anything else that is not a well-formed zone
    line raises :class:`CaptureError` naming the file, the line and what a
    line should look like.
    """
    info = BuddyInfo(file=file)
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        m = _LINE.match(line)
        if m is None:
            raise CaptureError(
                f"not a /proc/buddyinfo line: {_clip(line)!r}",
                file=file,
                line=lineno,
                expected=_EXPECTED,
            )
        node, zone, rest = int(m.group(1)), m.group(2), m.group(3).split()
        if zone not in ZONE_NAMES:
            raise CaptureError(
                f"unknown zone {zone!r}",
                file=file,
                line=lineno,
                expected="one of " + ", ".join(ZONE_NAMES),
            )
        if len(rest) != NR_ORDERS:
            raise CaptureError(
                f"{len(rest)} order columns, not {NR_ORDERS}",
                file=file,
                line=lineno,
                expected=_EXPECTED,
            )
        try:
            counts = tuple(int(c) for c in rest)
        except ValueError:
            bad = next(c for c in rest if not c.lstrip("-").isdigit())
            raise CaptureError(
                f"free-block count {bad!r} is not a number",
                file=file,
                line=lineno,
                expected=_EXPECTED,
            ) from None
        if any(c < 0 for c in counts):
            raise CaptureError(
                "negative free-block count",
                file=file,
                line=lineno,
                expected=_EXPECTED,
            )
        if (node, zone) in info.zones:
            raise CaptureError(
                f"node {node} zone {zone} appears twice",
                file=file,
                line=lineno,
                expected="one line per node and zone",
            )
        info.zones[(node, zone)] = counts
    if not info.zones:
        raise CaptureError(
            "no zone lines found", file=file, line=None, expected=_EXPECTED
        )
    return info


def load_buddyinfo(path: str | Path) -> BuddyInfo:
    """Read and parse a capture file."""
    text = read_capture(path, "buddyinfo", "cat /proc/buddyinfo", _EXPECTED)
    return parse_buddyinfo(text, file=str(path))


def _clip(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."
