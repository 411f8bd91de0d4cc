"""``bpftool -j prog show`` captures: the BPF programs a host has loaded.

bpftool prints a JSON array with one object per program (``-p`` only adds
indentation)::

    [{"id":42,"type":"cgroup_device","name":"sd_devices","tag":"...",
      "gpl_compatible":true,"loaded_at":1700000000,"uid":0,
      "orphaned":false,"bytes_xlated":504,"jited":true,"bytes_jited":309,
      "bytes_memlock":4096,"map_ids":[3]}, ...]

``bytes_jited`` is the size of the JIT image (absent when the program
runs in the interpreter, ``"jited": false``), ``bytes_xlated`` the size of
the verified BPF instructions; ``run_cnt``/``run_time_ns`` appear when
``kernel.bpf_stats_enabled`` was on. Programs without a JIT image use no
executable memory and are skipped (counted in ``interpreted``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simcore.errors import CaptureError
from simcore.workloads.captures import clip, read_capture

EXPECTED = (
    "the JSON array `bpftool -j prog show` prints, each program an object "
    'with an integer "id" and, when jited, "bytes_jited"'
)


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
    """Each array element is decoded on its own so an error can name the
    line its object starts on."""
    dec = json.JSONDecoder()
    pos = _skip_ws(text, 0)
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
