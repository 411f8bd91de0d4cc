"""Real-system captures a workload can be built from.

One parser per format, each raising :class:`~simcore.errors.CaptureError`
with the file, the line and what a line should look like:
``modules`` (``lsmod`` and ``/proc/modules``), ``bpftool``
(``bpftool prog show``, text or ``-j``) and ``trace`` (alloc/free/exec events).
``/proc/vmallocinfo`` and ``/proc/buddyinfo`` live with the kernel parts
they seed (:mod:`simcore.kernel.vmallocinfo`, :mod:`simcore.kernel.buddyinfo`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from simcore.errors import CaptureError

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel


def capture_path(kernel: Kernel, name: str) -> Path:
    """A capture named in a workload file (simcore.context.find_capture)."""
    return kernel.ctx.capture(name)


def read_capture(path: Path, what: str, expected: str) -> str:
    """The text of a capture file, or a CaptureError saying why not."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CaptureError(
            f"cannot read {what} capture: {exc.strerror}",
            file=str(path),
            expected=expected,
        ) from None
    except UnicodeDecodeError:
        raise CaptureError(
            f"{what} capture is not text", file=str(path), expected=expected
        ) from None


def clip(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."
