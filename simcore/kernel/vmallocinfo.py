"""Parser for real ``/proc/vmallocinfo`` captures.

The format is what ``vmalloc_info_show()`` (``s_show()`` before v6.9) and
``show_purge_info()`` of mm/vmalloc.c print, one area per line::

    0xffffc90000000000-0xffffc90000005000   20480 func+0x1e/0x30 pages=4 vmalloc N0=4
    0xffffc9000000a000-0xffffc9000000c000    8192 acpi_os_map_iomem+0x1c/0x30 phys=0x00000000fed00000 ioremap
    0xffffc90000400000-0xffffc90000500000 1048576 vm_map_ram
    0xffffc90000600000-0xffffc90000602000    8192 unpurged vm_area

Fields after the size, in the kernel's order: the caller (``%pS``:
``symbol+0xoff/0xlen``, a ``[module]`` suffix for module code, or a bare
address when no symbol is known; absent when ``vm->caller`` is NULL),
``pages=N``, ``phys=ADDR`` (``%pa``, 0x-prefixed; older kernels printed
bare hex), the flag words ``ioremap sparse vmalloc vmap user dma-coherent
vpages``, and on NUMA kernels ``N<node>=<pages>`` from ``show_numa_info()``.
The size printed is ``vm->size``, which includes the guard page, and equals
end - start.

A capture read without CAP_SYSLOG under ``kptr_restrict`` shows every
address as zero (``%pK``); such a file cannot seed an address space and is
rejected with a hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from simcore.constants import PAGE
from simcore.errors import CaptureError

# vm_struct flag words, as s_show()/vmalloc_info_show() prints them
FLAG_WORDS = ("ioremap", "sparse", "vmalloc", "vmap", "user", "dma-coherent", "vpages")

_RANGE = re.compile(r"0x([0-9a-fA-F]+)-0x([0-9a-fA-F]+)$")
_CALLER = re.compile(
    r"(?:[A-Za-z_.$][\w.$]*\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+|0x[0-9a-fA-F]+)$"
)
_MODULE = re.compile(r"\[[\w-]+\]$")
_NUMA = re.compile(r"N(\d+)=(\d+)$")
_EXPECTED = (
    "'0xSTART-0xEND SIZE [caller] [pages=N] [phys=ADDR] [flags] [Nn=N]', "
    "'0xSTART-0xEND SIZE vm_map_ram' or '0xSTART-0xEND SIZE unpurged vm_area'"
)


@dataclass(frozen=True, slots=True)
class VmallocInfoEntry:
    """One line of /proc/vmallocinfo."""

    start: int
    end: int
    kind: str  # "vm" (a vm_struct), "vm_map_ram" or "unpurged"
    caller: str | None = None  # symbol+off/len, with " [module]" if any
    pages: int = 0
    phys: int | None = None
    flags: frozenset[str] = frozenset()
    numa: tuple[tuple[int, int], ...] = field(default=())
    line: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def label(self) -> str:
        """What the area is, in the word the capture gives it: ``unpurged``,
        ``vm_map_ram``, the first of ``ioremap``, ``vmap``, ``sparse``,
        ``dma-coherent``, ``vmalloc`` it carries, or ``vm`` (none)."""
        if self.kind != "vm":
            return self.kind
        for word in ("ioremap", "vmap", "sparse", "dma-coherent", "vmalloc"):
            if word in self.flags:
                return word
        return "vm"


def parse_vmallocinfo(
    text: str, *, file: str = "<vmallocinfo>"
) -> list[VmallocInfoEntry]:
    """Parse the whole capture; CaptureError names the first bad line."""
    out: list[VmallocInfoEntry] = []
    for no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        out.append(_parse_line(raw, no, file))
    return out


def load_vmallocinfo(path: str | Path) -> list[VmallocInfoEntry]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise CaptureError(
            "vmallocinfo capture not found",
            file=str(p),
            expected="a file saved with `sudo cat /proc/vmallocinfo > FILE`",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptureError(f"cannot read the capture: {exc}", file=str(p)) from None
    return parse_vmallocinfo(text, file=str(p))


# The lowest kernel virtual address of x86-64 with 5-level paging (and far
# below arm64's, 0xffff000000000000 with 48-bit VAs).
KERNEL_HALF = 0xFF00000000000000

_REAL_ADDRESSES = (
    "real addresses: `sudo sysctl kernel.kptr_restrict=1` (0 hashes them, 2 "
    "hides them) and `sudo cat /proc/vmallocinfo > FILE`, or the script of "
    "`simcore capture --script`, which does both"
)


def _fail(msg: str, no: int, file: str, expected: str = _EXPECTED) -> CaptureError:
    return CaptureError(msg, file=file, line=no, expected=expected)


def _parse_line(raw: str, no: int, file: str) -> VmallocInfoEntry:
    tok = raw.split()
    if len(tok) < 2:
        raise _fail("too few fields", no, file)
    m = _RANGE.match(tok[0])
    if not m:
        raise _fail(f"bad address range {tok[0]!r}", no, file)
    start, end = int(m.group(1), 16), int(m.group(2), 16)
    # s_show() prints the range with %pK: kernel.kptr_restrict=2, or =1
    # without CAP_SYSLOG, prints zeros; =0 prints %p's hash, which on 64-bit
    # is masked to 32 bits (lib/vsprintf.c ptr_to_hashval()), so no kernel
    # address (all at 0xffff...) can look like it
    if start == 0 and end == 0:
        raise _fail(
            "addresses are hidden (printed as 0 by %pK under kptr_restrict)",
            no,
            file,
            expected=_REAL_ADDRESSES,
        )
    if start < 1 << 32 and end < 1 << 32:
        raise _fail(
            f"addresses {tok[0]} are hashed (%pK with kernel.kptr_restrict=0 "
            "prints a 32-bit hash, not the address)",
            no,
            file,
            expected=_REAL_ADDRESSES,
        )
    if start < KERNEL_HALF:
        # both modelled architectures keep kernel virtual addresses in the
        # upper half (x86-64 canonical form, arm64 TTBR1): anything below
        # was edited, truncated or comes from another kind of machine
        raise _fail(
            f"address {start:#x} is not a kernel address (x86-64 and arm64 "
            "kernel addresses start with 0xff)",
            no,
            file,
            expected=_REAL_ADDRESSES,
        )
    if end <= start or start % PAGE or end % PAGE:
        raise _fail(
            f"range {tok[0]} is empty or not page aligned",
            no,
            file,
            "START < END, both multiples of 4096",
        )
    if not tok[1].isdigit():
        raise _fail(f"size {tok[1]!r} is not a number", no, file)
    if int(tok[1]) != end - start:
        raise _fail(
            f"size {tok[1]} does not match the range ({end - start} bytes)",
            no,
            file,
            "the size column to equal END - START",
        )
    rest = tok[2:]
    if rest == ["vm_map_ram"]:
        return VmallocInfoEntry(start, end, "vm_map_ram", line=no)
    if rest == ["unpurged", "vm_area"]:
        return VmallocInfoEntry(start, end, "unpurged", line=no)
    i = 0
    caller = None
    if i < len(rest) and _CALLER.match(rest[i]) and "=" not in rest[i]:
        caller = rest[i]
        i += 1
        if i < len(rest) and _MODULE.match(rest[i]):
            caller += " " + rest[i]
            i += 1
    pages = 0
    phys = None
    flags: list[str] = []
    numa: list[tuple[int, int]] = []
    for t in rest[i:]:
        key, eq, val = t.partition("=")
        if eq and key == "pages":
            if not val.isdigit():
                raise _fail(f"bad page count {t!r}", no, file)
            pages = int(val)
        elif eq and key == "phys":
            try:
                phys = int(val, 16)
            except ValueError:
                raise _fail(f"bad physical address {t!r}", no, file) from None
        elif (nm := _NUMA.match(t)) is not None:
            numa.append((int(nm.group(1)), int(nm.group(2))))
        elif t in FLAG_WORDS:
            flags.append(t)
        else:
            raise _fail(f"unexpected field {t!r}", no, file)
    if pages * PAGE > end - start:
        raise _fail(
            f"pages={pages} does not fit in {end - start} bytes",
            no,
            file,
            "pages * 4096 <= END - START",
        )
    return VmallocInfoEntry(
        start,
        end,
        "vm",
        caller=caller,
        pages=pages,
        phys=phys,
        flags=frozenset(flags),
        numa=tuple(numa),
        line=no,
    )


def _head(start: int, end: int) -> str:
    return f"0x{start:016x}-0x{end:016x} {end - start:7d}"


def vm_line(
    start: int,
    end: int,
    *,
    caller: str | None = None,
    pages: int = 0,
    phys: int | None = None,
    flags: frozenset[str] | set[str] = frozenset(),
    numa: tuple[tuple[int, int], ...] = (),
) -> str:
    """The line of an area with a vm_struct, fields in the kernel's order."""
    parts = [_head(start, end)]
    if caller:
        parts.append(caller)
    if pages:
        parts.append(f"pages={pages}")
    if phys is not None:
        parts.append(f"phys=0x{phys:016x}")
    parts.extend(w for w in FLAG_WORDS if w in flags)
    parts.extend(f"N{n}={c}" for n, c in numa)
    return " ".join(parts)


def vm_map_ram_line(start: int, end: int) -> str:
    return _head(start, end) + " vm_map_ram"


def unpurged_line(start: int, end: int) -> str:
    """show_purge_info()'s line for a lazily freed area."""
    return _head(start, end) + " unpurged vm_area"


def format_line(entry: VmallocInfoEntry) -> str:
    """The line the kernel would print for ``entry`` (round-trips the parser)."""
    if entry.kind == "vm_map_ram":
        return vm_map_ram_line(entry.start, entry.end)
    if entry.kind == "unpurged":
        return unpurged_line(entry.start, entry.end)
    return vm_line(
        entry.start,
        entry.end,
        caller=entry.caller,
        pages=entry.pages,
        phys=entry.phys,
        flags=entry.flags,
        numa=entry.numa,
    )
