"""``lsmod`` and ``/proc/modules`` captures: loaded modules, sizes, users.

``/proc/modules`` is printed by ``m_show()`` in kernel/module/procfs.c,
one module per line::

    snd_hda_codec_generic 102400 1 snd_hda_codec_realtek, Live 0xffffffffc0a1d000
    ledtrig_audio 16384 1 snd_hda_codec_generic, Live 0x0000000000000000 (E)

name, size (the sum of the module's memory types; page multiples since
6.4), reference count, the modules *using* this one (each followed by a
comma, ``[permanent],`` for a module without an exit function, ``-`` for
none), state (``Live``, ``Loading``, ``Unloading``), the text address
(zero without CAP_SYSLOG) and, for tainted modules, flags in parentheses.
A kernel without CONFIG_MODULE_UNLOAD prints ``- -`` for count and users.

``lsmod`` (kmod) prints the same data from /sys/module as a table::

    Module                  Size  Used by
    snd_hda_codec_generic   102400  1 snd_hda_codec_realtek
    ledtrig_audio           16384  1 snd_hda_codec_generic

"Used by" names the users; a module's dependencies are the modules whose
users list names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from simcore.errors import CaptureError
from simcore.workloads.captures import clip, read_capture

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_ADDR = re.compile(r"^0x[0-9a-fA-F]+$")
_TAINT = re.compile(r"^\([A-Z+-]*\)$")
STATES = ("Live", "Loading", "Unloading")
LSMOD_EXPECTED = (
    "'NAME SIZE COUNT [USER,USER...]' under a 'Module Size Used by' header, "
    "as lsmod prints them"
)
PROC_EXPECTED = (
    "'NAME SIZE COUNT USERS STATE ADDRESS [(TAINTS)]' with USERS as 'a,b,' or "
    "'-', as /proc/modules prints them"
)


@dataclass(frozen=True, slots=True)
class ModuleRecord:
    name: str
    size: int
    users: tuple[str, ...]
    line: int


@dataclass
class ModuleList:
    """A capture's modules in file order, with dependencies worked out."""

    file: str
    records: list[ModuleRecord]

    def deps(self) -> dict[str, tuple[str, ...]]:
        """Module name -> the modules it uses, in capture order."""
        out: dict[str, list[str]] = {r.name: [] for r in self.records}
        for r in self.records:
            for u in r.users:
                out[u].append(r.name)
        return {k: tuple(v) for k, v in out.items()}

    def load_order(self) -> list[ModuleRecord]:
        """Records ordered so every module comes after what it uses
        (modprobe loads dependencies first); ties keep capture order,
        reversed, as lsmod lists the most recently loaded first."""
        deps = self.deps()
        by_name = {r.name: r for r in self.records}
        done: set[str] = set()
        order: list[ModuleRecord] = []
        for r in reversed(self.records):
            if r.name in done:
                continue
            stack = [(r.name, iter(deps[r.name]))]
            active = {r.name}
            while stack:
                name, it = stack[-1]
                nxt = next((d for d in it if d not in done), None)
                if nxt is None:
                    stack.pop()
                    active.discard(name)
                    if name not in done:
                        done.add(name)
                        order.append(by_name[name])
                elif nxt in active:
                    raise CaptureError(
                        f"dependency cycle through {nxt!r}",
                        file=self.file,
                        line=by_name[nxt].line,
                        expected="modules that use each other without a cycle",
                    )
                else:
                    active.add(nxt)
                    stack.append((nxt, iter(deps[nxt])))
        return order


def _err(msg: str, file: str, line: int, expected: str) -> CaptureError:
    return CaptureError(msg, file=file, line=line, expected=expected)


def _name(tok: str, file: str, line: int, expected: str) -> str:
    if not _NAME.match(tok):
        raise _err(f"bad module name {clip(tok)!r}", file, line, expected)
    return tok


def _size(tok: str, file: str, line: int, expected: str) -> int:
    if not tok.isdigit():
        raise _err(f"module size {clip(tok)!r} is not a number", file, line, expected)
    return int(tok)


def _count(tok: str, file: str, line: int, expected: str) -> None:
    if tok != "-" and not tok.lstrip("-").isdigit():
        raise _err(f"use count {clip(tok)!r} is not a number", file, line, expected)


def _users(tok: str, file: str, line: int, expected: str) -> tuple[str, ...]:
    if tok == "-":
        return ()
    names = [u for u in tok.split(",") if u and u != "[permanent]"]
    return tuple(_name(u, file, line, expected) for u in names)


def _record(
    head: list[str], users: str, file: str, line: int, expected: str
) -> ModuleRecord:
    """Name, size and use count (both formats start with them), users."""
    name = _name(head[0], file, line, expected)
    size = _size(head[1], file, line, expected)
    _count(head[2], file, line, expected)
    return ModuleRecord(name, size, _users(users, file, line, expected), line)


def parse_lsmod(text: str, file: str = "<lsmod>") -> ModuleList:
    records = []
    header = False
    for no, raw in enumerate(text.splitlines(), start=1):
        toks = raw.split()
        if not toks:
            continue
        if not header:
            if toks[:2] != ["Module", "Size"]:
                raise _err(
                    f"not an lsmod header: {clip(raw.strip())!r}",
                    file,
                    no,
                    "'Module  Size  Used by' on the first line",
                )
            header = True
            continue
        if len(toks) not in (3, 4):
            raise _err(
                f"{len(toks)} columns, not 3 or 4: {clip(raw.strip())!r}",
                file,
                no,
                LSMOD_EXPECTED,
            )
        users = toks[3] if len(toks) == 4 else "-"
        records.append(_record(toks[:3], users, file, no, LSMOD_EXPECTED))
    return _checked(records, file, LSMOD_EXPECTED)


def parse_proc_modules(text: str, file: str = "<proc-modules>") -> ModuleList:
    records = []
    for no, raw in enumerate(text.splitlines(), start=1):
        toks = raw.split()
        if not toks:
            continue
        if len(toks) == 7 and _TAINT.match(toks[6]):
            toks = toks[:6]
        if len(toks) != 6:
            raise _err(
                f"{len(toks)} columns, not 6 (or 7 with taints): {clip(raw.strip())!r}",
                file,
                no,
                PROC_EXPECTED,
            )
        rec = _record(toks[:3], toks[3], file, no, PROC_EXPECTED)
        if toks[4] not in STATES:
            raise _err(
                f"unknown module state {clip(toks[4])!r}",
                file,
                no,
                "one of " + ", ".join(STATES),
            )
        if not _ADDR.match(toks[5]):
            raise _err(f"bad text address {clip(toks[5])!r}", file, no, PROC_EXPECTED)
        records.append(rec)
    return _checked(records, file, PROC_EXPECTED)


def _checked(records: list[ModuleRecord], file: str, expected: str) -> ModuleList:
    if not records:
        raise CaptureError("no modules found", file=file, expected=expected)
    seen: dict[str, int] = {}
    for r in records:
        if r.name in seen:
            raise _err(
                f"module {r.name!r} listed twice (first on line {seen[r.name]})",
                file,
                r.line,
                "one line per module",
            )
        seen[r.name] = r.line
    for r in records:
        for u in r.users:
            if u not in seen:
                raise _err(
                    f"used by {u!r}, which the capture does not list",
                    file,
                    r.line,
                    "a complete capture: every user is a listed module",
                )
    out = ModuleList(file, records)
    out.load_order()  # reject cycles now, with their line
    return out


def load_lsmod(path: str | Path) -> ModuleList:
    p = Path(path)
    return parse_lsmod(read_capture(p, "lsmod", LSMOD_EXPECTED), file=str(p))


def load_proc_modules(path: str | Path) -> ModuleList:
    p = Path(path)
    text = read_capture(p, "/proc/modules", PROC_EXPECTED)
    return parse_proc_modules(text, file=str(p))
