"""Page touches of many code images, gathered into one quantum's stream.

A CPU running ``k`` programs in a quantum touches the pages of each
program's image in turn. Building that stream object by object costs a few
Python calls per invocation, which at millions of invocations per simulated
second is most of the simulator's time. The table keeps every image's
touches in one flat array and, per position of the live list the programs
are picked from, where that image's touches start, how many there are, its
page shift and its size. A quantum's stream is then one compiled pass over
the picks (:func:`simcore.hw.compiled.gather`), whatever ``k`` is.

The live list changes (loads append, unloads swap-remove) while the table
holds a copy of it as it was at the last sync. A gather first checks that
the picked positions still hold the same objects and the list has the same
length (C-level ``map`` over the picks, no Python per pick); if not, it
syncs: positions are re-read from the live list, and only images not seen
before have their touches copied in. A :class:`LiveList` counts its own
changes, so the check is then one compare instead of one per pick (a few
microseconds a quantum at a hundred picks). Images are keyed by the identity of
the object owning them (a ``BpfProg``), which the table keeps a reference
to, so an ``id`` is never reused while its row exists.

An image must not move or change size while its owner is live (strategies
set ``addr``/``page_shift``/``size`` before a program goes live and change
them only once it is freed). Owners no longer live leave dead rows; once
they could outnumber the live ones the rows are rebuilt from the live list,
so memory follows the number of live images, not how many came and went.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import is_

import numpy as np

# Dead rows tolerated beyond the live count before a rebuild: rebuilds are
# O(live), so a churning workload should not pay one per load (estimate).
SLACK_ROWS = 256


class LiveList(list):
    """A list that counts its changes (``version``): a :class:`TouchTable`
    gathering from it checks one number instead of every pick."""

    __slots__ = ("version",)

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.version = 0

    def _changed(name):  # noqa: N805 - builds the methods below
        method = getattr(list, name)

        def changed(self, *args):
            self.version += 1
            return method(self, *args)

        changed.__name__ = name
        return changed

    append = _changed("append")
    extend = _changed("extend")
    insert = _changed("insert")
    pop = _changed("pop")
    remove = _changed("remove")
    clear = _changed("clear")
    sort = _changed("sort")
    reverse = _changed("reverse")
    __setitem__ = _changed("__setitem__")
    __delitem__ = _changed("__delitem__")
    __iadd__ = _changed("__iadd__")
    __imul__ = _changed("__imul__")
    del _changed


class TouchTable:
    """Touches of ``image_of(owner)`` for the owners of a live list.

    An image has ``touches()`` (its page addresses, uint64),
    ``touch_shifts()`` (their mapping shifts, uint8) and ``size`` (bytes),
    as :class:`simcore.kernel.execmem.ExecAlloc`.
    """

    def __init__(self, image_of: Callable[[object], object]) -> None:
        from simcore.hw.compiled import gather

        self._gather = gather
        self._image_of = image_of
        self._snap: list = []  # the live list as of the last sync
        # the LiveList and its version at the last sync, if gathered from one
        self._synced: tuple[object, int] | None = None
        self._clear_rows()
        self._pos_first = self._first
        self._pos_count = self._count
        self._pos_size = self._size

    def _clear_rows(self) -> None:
        self._row: dict[int, int] = {}  # id(owner) -> row
        self._owners: list = []  # keeps every keyed id alive
        self._flat = np.zeros(0, dtype=np.uint64)
        self._flat_shift = np.zeros(0, dtype=np.uint8)
        self._first = np.zeros(0, dtype=np.int64)
        self._count = np.zeros(0, dtype=np.int64)
        self._size = np.zeros(0, dtype=np.int64)

    def _sync(self, live: list) -> None:
        """Rows for images not seen before; positions re-read from ``live``."""
        row = self._row
        if len(self._owners) > 2 * len(live) + SLACK_ROWS:
            self._clear_rows()
            row = self._row
        # owners compare by value (dataclasses) and do not hash: key by id
        new = [o for i, o in {id(o): o for o in live}.items() if i not in row]
        if new:
            images = list(map(self._image_of, new))
            touches = [im.touches() for im in images]
            n = len(new)
            count = np.fromiter(map(len, touches), np.int64, n)
            first = np.cumsum(count) - count + len(self._flat)
            base = len(self._owners)
            row.update(zip(map(id, new), range(base, base + n), strict=True))
            self._owners.extend(new)
            self._flat = np.concatenate([self._flat, *touches])
            shifts = [im.touch_shifts() for im in images]
            self._flat_shift = np.concatenate([self._flat_shift, *shifts])
            self._first = np.concatenate([self._first, first])
            self._count = np.concatenate([self._count, count])
            size = np.fromiter((im.size for im in images), np.int64, n)
            self._size = np.concatenate([self._size, size])
        rows = np.fromiter(map(row.__getitem__, map(id, live)), np.int64, len(live))
        self._pos_first = self._first[rows]
        self._pos_count = self._count[rows]
        self._pos_size = self._size[rows]
        self._snap = list(live)
        version = getattr(live, "version", None)
        self._synced = None if version is None else (live, version)

    def gather(
        self, live: list, picks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Touches and page shifts of ``live[i]`` for each ``i`` in
        ``picks`` (int64), concatenated in order, and the images' bytes."""
        snap = self._snap
        synced = self._synced
        if synced is not None and synced[0] is live and synced[1] == live.version:
            pass  # unchanged since the last sync
        elif len(live) != len(snap):
            self._sync(live)
        else:
            at = picks.tolist()
            if not all(map(is_, map(live.__getitem__, at), map(snap.__getitem__, at))):
                self._sync(live)
        return self._gather(
            picks,
            self._pos_first,
            self._pos_count,
            self._pos_size,
            self._flat,
            self._flat_shift,
        )
