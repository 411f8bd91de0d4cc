"""Real-system captures a workload can be built from.

One parser per format, each raising :class:`~simcore.errors.CaptureError`
with the file, the line and what a line should look like:
``modules`` (``lsmod`` and ``/proc/modules``), ``bpftool``
(``bpftool prog show``, text or ``-j``) and ``trace`` (alloc/free/exec events).
``/proc/vmallocinfo``, ``/proc/buddyinfo``, ``/proc/meminfo`` and
``/proc/vmstat`` live with the kernel parts they seed
(:mod:`simcore.kernel.vmallocinfo`, :mod:`simcore.kernel.buddyinfo`,
:mod:`simcore.kernel.meminfo`, :mod:`simcore.kernel.vmstat`; applied by
:mod:`simcore.kernel.host_state`). ``collect`` is the shell script that
takes them all from a host.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from simcore.kernel import procfs

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel


def capture_path(kernel: Kernel, name: str) -> Path:
    """A capture named in a workload file (simcore.context.find_capture)."""
    return kernel.ctx.capture(name)


def read_capture(path: Path, what: str, expected: str) -> str:
    """The text of a capture file, or a CaptureError saying why not
    (:func:`simcore.kernel.procfs.read_capture`, the one reader of every
    capture kind)."""
    return procfs.read_capture(path, what, None, expected)


def clip(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."
