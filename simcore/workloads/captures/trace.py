"""Allocation traces: alloc/free/exec events, as CSV or JSON lines.

One event per line, fields:

=========  ==========================================================
timestamp  integer nanoseconds (any origin: bpftrace's ``nsecs`` is time
           since boot; replay can rebase it to start at zero)
cpu        the CPU the event ran on (folded modulo the simulated CPUs)
op         what happened, one of the operations below
size       bytes (see the operation)
type       a qualifier (see the operation); may be empty
id         names the object, so a free or an exec finds its allocation
           (an address works: ids may be reused once freed)
=========  ==========================================================

==============  ================  ===========================================
op              size              type
==============  ================  ===========================================
vmalloc         bytes             ``vmalloc`` (default) or ``modules``: range
vfree           --                --
alloc           bytes             executable-memory kind: ``module_text``,
                                  ``bpf_prog``, ``bpf_trampoline``, ... :
                                  allocated, written and finalized by the
                                  strategy under test
free            --                --
bpf_load        JIT image bytes   program type (informational)
bpf_free        --                --
module_load     core bytes        module name (default: the id)
module_unload   --                --
exec            bytes run         -- : the object's pages go through the CPU's
                (0: all of it)    iTLB; bytes / 4 count as instructions
==============  ================  ===========================================

CSV files start with a header naming the columns (any order, ``type`` and
``size`` may be left out); lines starting with ``#`` are comments::

    timestamp,cpu,op,size,type,id
    1000,0,vmalloc,8192,vmalloc,a1
    5000,0,vfree,,,a1

JSON lines (``.jsonl``) hold one object per line with the same keys::

    {"timestamp": 1000, "cpu": 0, "op": "vmalloc", "size": 8192, "id": "a1"}

Events are replayed in timestamp order (a stable sort: captures merged
from per-CPU buffers need not be sorted).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from simcore.errors import CaptureError
from simcore.kernel.execmem import Kind
from simcore.workloads.captures import clip, read_capture

FIELDS = ("timestamp", "cpu", "op", "size", "type", "id")
# op -> (needs a size, creates an object, frees an object)
OPS = {
    "vmalloc": (True, True, False),
    "vfree": (False, False, True),
    "alloc": (True, True, False),
    "free": (False, False, True),
    "bpf_load": (True, True, False),
    "bpf_free": (False, False, True),
    "module_load": (True, True, False),
    "module_unload": (False, False, True),
    "exec": (False, False, False),
}
CREATES = frozenset(op for op, (_, creates, _) in OPS.items() if creates)
RANGES = ("vmalloc", "modules")
KINDS = get_args(Kind)
EXPECTED = (
    "timestamp,cpu,op,size,type,id with timestamp, cpu and size non-negative "
    "integers and op one of " + ", ".join(OPS)
)


@dataclass(frozen=True, slots=True)
class TraceEvent:
    timestamp: int
    cpu: int
    op: str
    size: int
    type: str
    id: str
    line: int = 0


def _int(v, what: str, file: str, line: int) -> int:
    if isinstance(v, bool) or v is None or v == "":
        raise CaptureError(
            f"{what} is missing", file=file, line=line, expected=EXPECTED
        )
    if isinstance(v, int):
        n = v
    elif isinstance(v, str) and v.strip().isdigit():
        n = int(v)
    else:
        raise CaptureError(
            f"{what} {clip(str(v))!r} is not a non-negative integer",
            file=file,
            line=line,
            expected=EXPECTED,
        )
    if n < 0:
        raise CaptureError(
            f"{what} {n} is negative", file=file, line=line, expected=EXPECTED
        )
    return n


def _event(row: dict, file: str, line: int) -> TraceEvent:
    op = str(row.get("op") or "").strip()
    if op not in OPS:
        raise CaptureError(
            f"unknown op {clip(op)!r}",
            file=file,
            line=line,
            expected="one of " + ", ".join(OPS),
        )
    oid = str(row.get("id") if row.get("id") is not None else "").strip()
    if not oid:
        raise CaptureError("id is missing", file=file, line=line, expected=EXPECTED)
    needs_size = OPS[op][0]
    raw_size = row.get("size")
    size = (
        _int(raw_size, "size", file, line)
        if needs_size or raw_size not in (None, "")
        else 0
    )
    if needs_size and size == 0:
        raise CaptureError(
            f"{op} of size 0", file=file, line=line, expected="a size above 0"
        )
    typ = str(row.get("type") or "").strip()
    if op == "vmalloc" and typ and typ not in RANGES:
        raise CaptureError(
            f"unknown vmalloc range {clip(typ)!r}",
            file=file,
            line=line,
            expected="one of " + ", ".join(RANGES),
        )
    if op == "alloc" and typ not in KINDS:
        raise CaptureError(
            f"unknown executable-memory kind {clip(typ)!r}",
            file=file,
            line=line,
            expected="one of " + ", ".join(KINDS),
        )
    return TraceEvent(
        timestamp=_int(row.get("timestamp"), "timestamp", file, line),
        cpu=_int(row.get("cpu"), "cpu", file, line),
        op=op,
        size=size,
        type=typ,
        id=oid,
        line=line,
    )


def _csv_rows(text: str, file: str):
    lines = [
        (no, raw)
        for no, raw in enumerate(text.splitlines(), start=1)
        if raw.strip() and not raw.lstrip().startswith("#")
    ]
    if not lines:
        return
    head_no, head = lines[0]
    cols = [c.strip() for c in next(csv.reader([head]))]
    missing = [c for c in ("timestamp", "cpu", "op", "id") if c not in cols]
    unknown = [c for c in cols if c not in FIELDS]
    if missing or unknown:
        what = f"missing {missing}" if missing else f"unknown {unknown}"
        raise CaptureError(
            f"bad CSV header, columns {what}",
            file=file,
            line=head_no,
            expected="a header line naming " + ",".join(FIELDS),
        )
    for no, raw in lines[1:]:
        vals = next(csv.reader([raw]))
        if len(vals) != len(cols):
            raise CaptureError(
                f"{len(vals)} fields, the header names {len(cols)}",
                file=file,
                line=no,
                expected=EXPECTED,
            )
        yield no, dict(zip(cols, vals, strict=True))


def _jsonl_rows(text: str, file: str):
    for no, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as exc:
            raise CaptureError(
                f"bad JSON: {exc.msg}", file=file, line=no, expected=EXPECTED
            ) from None
        if not isinstance(obj, dict):
            raise CaptureError(
                "not a JSON object", file=file, line=no, expected=EXPECTED
            )
        unknown = [k for k in obj if k not in FIELDS]
        if unknown:
            raise CaptureError(
                f"unknown keys {unknown}", file=file, line=no, expected=EXPECTED
            )
        yield no, obj


def is_jsonl(text: str, file: str) -> bool:
    suffix = Path(file).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return True
    if suffix == ".csv":
        return False
    for raw in text.splitlines():
        s = raw.strip()
        if s and not s.startswith("#"):
            return s.startswith("{")
    return False


def parse_trace(text: str, file: str = "<trace>") -> list[TraceEvent]:
    """Every event, sorted by timestamp; CaptureError names a bad line."""
    rows = _jsonl_rows(text, file) if is_jsonl(text, file) else _csv_rows(text, file)
    events = [_event(row, file, no) for no, row in rows]
    if not events:
        raise CaptureError("no events found", file=file, expected=EXPECTED)
    events.sort(key=lambda e: e.timestamp)
    _check_lifetimes(events, file)
    return events


def _check_lifetimes(events: list[TraceEvent], file: str) -> None:
    """An id may not be allocated again while it is live. Frees and execs
    of ids never allocated in the trace are allowed (a capture starts with
    objects already live) and skipped at replay."""
    live: dict[str, int] = {}
    for e in events:
        if e.op in CREATES:
            if e.id in live:
                raise CaptureError(
                    f"id {clip(e.id)!r} allocated again while live "
                    f"(since line {live[e.id]})",
                    file=file,
                    line=e.line,
                    expected="a free of an id before it is reused",
                )
            live[e.id] = e.line
        elif OPS[e.op][2]:  # a free
            live.pop(e.id, None)


def load_trace(path: str | Path) -> list[TraceEvent]:
    p = Path(path)
    return parse_trace(read_capture(p, "trace", EXPECTED), file=str(p))


def format_trace(events: list[TraceEvent], jsonl: bool) -> str:
    """The inverse of parse_trace() (line numbers aside)."""
    if jsonl:
        return "".join(
            json.dumps(
                {
                    "timestamp": e.timestamp,
                    "cpu": e.cpu,
                    "op": e.op,
                    "size": e.size,
                    "type": e.type,
                    "id": e.id,
                }
            )
            + "\n"
            for e in events
        )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIELDS)
    for e in events:
        w.writerow([e.timestamp, e.cpu, e.op, e.size or "", e.type, e.id])
    return buf.getvalue()
