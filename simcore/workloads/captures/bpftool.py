"""``bpftool prog show`` captures: the BPF programs a host has loaded.

Both of bpftool's forms load. With ``-j`` it prints a JSON array with one
object per program (``-p`` only adds indentation)::

    [{"id":42,"type":"cgroup_device","name":"sd_devices","tag":"...",
      "gpl_compatible":true,"loaded_at":1700000000,"uid":0,
      "orphaned":false,"bytes_xlated":504,"jited":true,"bytes_jited":309,
      "bytes_memlock":4096,"map_ids":[3]}, ...]

``bytes_jited`` is the size of the JIT image (absent when the program
runs in the interpreter, ``"jited": false``), ``bytes_xlated`` the size of
the verified BPF instructions; ``run_cnt``/``run_time_ns`` appear when
``kernel.bpf_stats_enabled`` was on. Programs without a JIT image use no
executable memory and are skipped (counted in ``interpreted``).

Without ``-j`` (``print_prog_plain()`` in tools/bpf/bpftool/prog.c) each
program is a header line and indented detail lines::

    42: cgroup_device  name sd_devices  tag 531db05b114e9af3  gpl
    \tloaded_at 2023-11-14T22:13:20+0000  uid 0
    \txlated 504B  jited 309B  memlock 4096B  map_ids 3

``not jited`` stands where an interpreted program's ``jited`` size would;
``run_time_ns ... run_cnt N`` ends the header when stats were on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simcore.errors import CaptureError
from simcore.workloads.captures import clip, read_capture

EXPECTED = (
    "what `bpftool prog show` prints: its text (each program an `ID: TYPE ... "
    "tag ...` line and a `xlated NB  jited NB` line), or with -j a JSON array "
    'of objects with an integer "id" and, when jited, "bytes_jited"'
)
# print_prog_header_plain(): "ID: TYPE  [name NAME  ]tag HEX..."; an unknown
# type prints as "type N"
_HEADER = re.compile(r"^(\d+): (type \d+|\S+)\s+(?:name (\S+)\s+)?tag [0-9a-f]+(.*)$")
_RUN_CNT = re.compile(r"\brun_cnt (\d+)")
_XLATED = re.compile(r"\bxlated (\d+)B")
_JITED = re.compile(r"\bjited (\d+)B")


@dataclass(frozen=True, slots=True)
class BpfProgInfo:
    id: int
    type: str
    name: str
    bytes_jited: int
    bytes_xlated: int
    run_cnt: int | None
    line: int


@dataclass
class BpfProgList:
    file: str
    progs: list[BpfProgInfo]
    interpreted: int = 0

    @property
    def sizes(self) -> np.ndarray:
        return np.array([p.bytes_jited for p in self.progs], dtype=np.int64)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` JIT sizes drawn from the capture, with replacement (the
        same interface as the size distributions of the workload file)."""
        return rng.choice(self.sizes, size=n)


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def parse_bpftool(text: str, file: str = "<bpftool>") -> BpfProgList:
    """Either form; each JSON array element is decoded on its own so an
    error can name the line its object starts on."""
    dec = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos < len(text) and text[pos].isdigit():
        return parse_bpftool_text(text, file)
    if pos >= len(text) or text[pos] != "[":
        raise CaptureError(
            "not a JSON array", file=file, line=_line_at(text, pos), expected=EXPECTED
        )
    out = BpfProgList(file, [])
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        pos += 1
    else:
        while True:
            line = _line_at(text, pos)
            try:
                obj, pos = dec.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise CaptureError(
                    f"bad JSON: {exc.msg}",
                    file=file,
                    line=_line_at(text, exc.pos),
                    expected=EXPECTED,
                ) from None
            prog = _prog(obj, file, line)
            if prog is None:
                out.interpreted += 1
            else:
                out.progs.append(prog)
            pos = _skip_ws(text, pos)
            if pos < len(text) and text[pos] == ",":
                pos = _skip_ws(text, pos + 1)
                continue
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            raise CaptureError(
                "expected ',' or ']' after a program",
                file=file,
                line=_line_at(text, pos),
                expected=EXPECTED,
            )
    rest = _skip_ws(text, pos)
    if rest < len(text):
        raise CaptureError(
            f"text after the array: {clip(text[rest:].splitlines()[0])!r}",
            file=file,
            line=_line_at(text, rest),
            expected=EXPECTED,
        )
    if not out.progs:
        raise CaptureError(
            "no program with a JIT image", file=file, line=None, expected=EXPECTED
        )
    return out


def parse_bpftool_text(text: str, file: str = "<bpftool>") -> BpfProgList:
    """The plain form: a header line per program, then its detail lines
    (indented), of which the ``xlated`` one gives the sizes."""
    out = BpfProgList(file, [])
    cur: dict | None = None

    def close() -> None:
        if cur is None:
            return
        if cur["jited"] is None and not cur["not_jited"]:
            raise CaptureError(
                f"program {cur['id']} has no `xlated NB  jited NB` line",
                file=file,
                line=cur["line"],
                expected=EXPECTED,
            )
        if not cur["jited"]:
            out.interpreted += 1
            return
        out.progs.append(
            BpfProgInfo(
                id=cur["id"],
                type=cur["type"],
                name=cur["name"],
                bytes_jited=cur["jited"],
                bytes_xlated=cur["xlated"],
                run_cnt=cur["run_cnt"],
                line=cur["line"],
            )
        )

    for no, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        if raw[0] in " \t":
            if cur is None:
                raise CaptureError(
                    "a detail line before any program line",
                    file=file,
                    line=no,
                    expected=EXPECTED,
                )
            if m := _XLATED.search(raw):
                cur["xlated"] = int(m.group(1))
                j = _JITED.search(raw[m.end() :])
                cur["jited"] = int(j.group(1)) if j else 0
                cur["not_jited"] = "not jited" in raw
            continue
        m = _HEADER.match(raw.rstrip())
        if not m:
            raise CaptureError(
                f"not a program line: {clip(raw)!r}",
                file=file,
                line=no,
                expected=EXPECTED,
            )
        close()
        runs = _RUN_CNT.search(m.group(4))
        cur = {
            "id": int(m.group(1)),
            "type": m.group(2),
            "name": m.group(3) or "",
            "run_cnt": int(runs.group(1)) if runs else None,
            "xlated": 0,
            "jited": None,
            "not_jited": False,
            "line": no,
        }
    close()
    if not out.progs:
        raise CaptureError(
            "no program with a JIT image", file=file, line=None, expected=EXPECTED
        )
    return out


def _int_field(obj: dict, key: str, file: str, line: int, need: bool) -> int | None:
    v = obj.get(key)
    if v is None and not need:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        what = "missing" if v is None else f"{v!r} is not a non-negative integer"
        raise CaptureError(
            f"program field {key!r}: {what}", file=file, line=line, expected=EXPECTED
        )
    return v


def _prog(obj, file: str, line: int) -> BpfProgInfo | None:
    if not isinstance(obj, dict):
        raise CaptureError(
            f"array element is {type(obj).__name__}, not an object",
            file=file,
            line=line,
            expected=EXPECTED,
        )
    pid = _int_field(obj, "id", file, line, True)
    if obj.get("jited") is False:
        return None
    jited = _int_field(obj, "bytes_jited", file, line, True)
    if jited == 0:
        return None
    xlated = _int_field(obj, "bytes_xlated", file, line, False) or 0
    runs = _int_field(obj, "run_cnt", file, line, False)
    return BpfProgInfo(
        id=pid,
        type=str(obj.get("type", "unspec")),
        name=str(obj.get("name", "")),
        bytes_jited=jited,
        bytes_xlated=xlated,
        run_cnt=runs,
        line=line,
    )


def load_bpftool(path: str | Path) -> BpfProgList:
    p = Path(path)
    return parse_bpftool(read_capture(p, "bpftool", EXPECTED), file=str(p))
