"""The exceptions simcore raises, as one tree.

::

    SimcoreError                 anything simcore raises on purpose
    ├── InputError               bad input from the user: exit code 2
    │   ├── ConfigError          a workload/sweep/profile file or --set is wrong
    │   └── CaptureError         a real capture (/proc/vmallocinfo, lsmod, ...)
    │                            does not parse
    └── SimulationError          the model reached an impossible state: exit 1

Input errors carry where the problem is (file, YAML path, line) so the
command line can print one paragraph a user can act on, never a traceback.
"""

from __future__ import annotations


class SimcoreError(Exception):
    """Base of every error simcore raises deliberately."""


class InputError(SimcoreError):
    """The user's input is wrong; the command exits with status 2."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        path: str | None = None,
        line: int | None = None,
        expected: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.path = path
        self.line = line
        self.expected = expected

    def render(self) -> str:
        """One paragraph: where, what is wrong, what was expected."""
        where = []
        if self.file:
            where.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.path:
            where.append(f"at {self.path}")
        head = " ".join(where)
        text = f"{head}: {self.message}" if head else self.message
        if self.expected:
            text += f" (expected {self.expected})"
        return "error: " + text

    def __str__(self) -> str:
        return self.render()


class ConfigError(InputError):
    """A workload, sweep or profile file, or a --set override, is invalid."""


class CaptureError(InputError):
    """A real-system capture file has a malformed line. ``origin`` names
    the workload key (and its file and line) that pointed at the capture."""

    origin: str | None = None

    def render(self) -> str:
        text = super().render()
        if self.origin:
            text += f"; the capture is named by {self.origin}"
        return text


class SimulationError(SimcoreError):
    """An internal invariant of the model broke; this is a simcore bug."""
