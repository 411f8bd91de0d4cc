"""Free kernel virtual address space: the free tree of mm/vmalloc.c.

Models ``free_vmap_area_root`` / ``free_vmap_area_list``: free blocks sorted
by address in a balanced search tree whose every node carries
``subtree_max_size``, the largest free block in its subtree
(``RB_DECLARE_CALLBACKS_MAX(..., free_vmap_area_rb_augment_cb, ...)``).
The kernel functions modelled, with the same steps:

- ``find_vmap_lowest_match()``: descend left while the left subtree can hold
  the request and lies above ``vstart``, else test the node
  (``is_within_this_va()``), else go right, else climb back and retry the
  first ancestor whose right subtree can hold it (moving ``vstart`` past it);
  with ``align > PAGE_SIZE`` the search length is ``size + align - 1``
  unless the range is exactly ``size`` long (``__alloc_vmap_area()``);
- ``va_alloc()`` / ``va_clip()`` with the fit types of
  ``classify_va_fit_type()``: FL (unlink the block), LE / RE (shrink it in
  place), NE (shrink it and insert the left remainder), each followed by
  ``augment_tree_propagate_from()``, which stops as soon as a node's
  ``subtree_max_size`` does not change;
- ``__merge_or_add_vmap_area()`` + ``augment_tree_propagate_from()``: find
  the link position (``find_va_links()``, which refuses overlaps), merge
  with the next and/or previous block, or link a new block;
- ``pvm_find_va_enclose_addr()`` + ``va_clip()`` (as ``pcpu_get_vm_areas()``
  and ``vmap_init_free_space()`` use them) to carve a given range out.

Why a treap and not a red-black tree. The kernel's rb-tree guarantees a
height of at most 2 log2(n); in a treap (a search tree that is also a heap
on random priorities) a node's expected depth is ~1.39 log2(n) and the
height stays within a small multiple of log2(n) with high probability, so
the number of nodes a search visits is of the same size, and the
``subtree_max_size`` augmentation is maintained exactly as in the kernel
(recompute a node from its block and its children, walk up until nothing
changes). In Python the treap's split/merge is a few short loops, where
red-black insert/erase fix-ups with augmented rotations would cost several
times more interpreter time per operation on the simulator's hot path.
Priorities come from a fixed-seed generator, so every run builds the same
tree.

``visits`` returned by every operation is the number of tree nodes the
operation touched: nodes examined by the search (including the climb
back), plus nodes whose ``subtree_max_size`` was recomputed, plus nodes
relinked by an insert or unlink. Lock hold times are charged from it.
The kernel also keeps the blocks on an address-ordered list for O(1)
neighbours; here the neighbours of a freed range are the last nodes the
search path turned at, which the same descent already visited.

Memory is one small object per free block: a 32 TiB range with no
allocations is one node.
"""

from __future__ import annotations

import random

from simcore.constants import PAGE

_PAGE_MASK = PAGE - 1

# Fixed seed for treap priorities: the tree's shape is part of the model's
# cost (visits), so it must not depend on anything but the operations.
_PRIO_SEED = 0x766D6170


class _Va:
    """struct vmap_area in the free tree."""

    __slots__ = ("start", "end", "max", "left", "right", "prio")

    def __init__(self, start: int, end: int, prio: int) -> None:
        self.start = start
        self.end = end
        self.max = end - start  # subtree_max_size
        self.left: _Va | None = None
        self.right: _Va | None = None
        self.prio = prio


def _pull(n: _Va) -> None:
    m = n.end - n.start
    c = n.left
    if c is not None and c.max > m:
        m = c.max
    c = n.right
    if c is not None and c.max > m:
        m = c.max
    n.max = m


class KvaSpace:
    """Free blocks of ``[start, end)``, initially one block covering it."""

    def __init__(self, start: int, end: int, *, populated: bool = True) -> None:
        if end <= start:
            raise ValueError("empty KVA range")
        self.start = start
        self.end = end
        self._bits = random.Random(_PRIO_SEED).getrandbits
        self.root: _Va | None = None
        self._n = 0
        self._free = 0
        self._touched = 0
        # nodes the last alloc() or free() wrote (clip, merge, propagation,
        # rebalancing): the search only reads, the rest dirties cache lines
        self.written = 0
        # vmap_area objects given back with kmem_cache_free() so far: one per
        # FL fit and one per merge (the freed area is folded into a neighbour,
        # two when it joins both). Callers charge a slab free per object.
        self.released = 0
        if populated:
            self.root = _Va(start, end, self._bits(62))
            self._n = 1
            self._free = end - start

    @classmethod
    def empty(cls, start: int, end: int) -> KvaSpace:
        """A tree over ``[start, end)`` with no free block yet (a purge tree)."""
        return cls(start, end, populated=False)

    # -- queries -------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def free_bytes(self) -> int:
        return self._free

    def blocks(self) -> list[tuple[int, int]]:
        """The free blocks as (start, end), in address order."""
        out: list[tuple[int, int]] = []
        stack: list[_Va] = []
        n = self.root
        while stack or n is not None:
            while n is not None:
                stack.append(n)
                n = n.left
            n = stack.pop()
            out.append((n.start, n.end))
            n = n.right
        return out

    def is_free(self, addr: int, size: int) -> bool:
        node, _, _ = self._enclosing(addr)
        return node is not None and addr + size <= node.end

    def height(self) -> int:
        best = 0
        stack = [(self.root, 1)] if self.root is not None else []
        while stack:
            n, d = stack.pop()
            if d > best:
                best = d
            if n.left is not None:
                stack.append((n.left, d + 1))
            if n.right is not None:
                stack.append((n.right, d + 1))
        return best

    def check(self) -> None:
        """Assert the tree's invariants (order, heap, augmentation, merging)."""
        prev_end = None
        stack: list[_Va] = []
        n = self.root
        count = 0
        total = 0
        while stack or n is not None:
            while n is not None:
                stack.append(n)
                n = n.left
            n = stack.pop()
            count += 1
            total += n.end - n.start
            if n.end <= n.start:
                raise AssertionError(f"empty block at {n.start:#x}")
            if prev_end is not None and n.start <= prev_end:
                raise AssertionError(f"blocks touch or overlap at {n.start:#x}")
            prev_end = n.end
            want = n.end - n.start
            for c in (n.left, n.right):
                if c is not None:
                    want = max(want, c.max)
                    if c.prio > n.prio:
                        raise AssertionError("heap order broken")
            if n.max != want:
                raise AssertionError(f"subtree_max_size wrong at {n.start:#x}")
            n = n.right
        if count != self._n or total != self._free:
            raise AssertionError("block count or free bytes out of sync")

    # -- allocation ------------------------------------------------------------
    def alloc(
        self,
        size: int,
        align: int = PAGE,
        *,
        vstart: int | None = None,
        vend: int | None = None,
    ) -> tuple[int | None, int, str]:
        """__alloc_vmap_area(): (address or None, visits, fit type).

        Fit types as in va_clip: FL (exact), LE/RE (edge), NE (split);
        "NONE" when nothing fits below ``vend``.
        """
        if size <= 0 or size & _PAGE_MASK:
            raise ValueError(f"size {size} is not a positive multiple of PAGE_SIZE")
        if align <= 0 or align & (align - 1):
            raise ValueError(f"alignment {align} is not a power of two")
        if vstart is None:
            vstart = self.start
        if vend is None:
            vend = self.end
        adjust = not (align <= PAGE or vend - vstart == size)
        length = size + align - 1 if adjust else size
        node, path, visits = self._lowest_match(size, align, vstart, length)
        if node is None:
            return None, visits, "NONE"
        # va_alloc(): the original vstart, not the one the climb moved
        nva = node.start if node.start > vstart else vstart
        nva = (nva + align - 1) & -align
        if nva + size > vend:
            return None, visits, "NONE"
        fit, work = self._clip(node, path, nva, size)
        self.written = work
        return nva, visits + work, fit

    def reserve(self, addr: int, size: int) -> tuple[int, str]:
        """Carve ``[addr, addr + size)`` out of the free block holding it.

        pvm_find_va_enclose_addr() + va_clip(). Returns (visits, fit type);
        ValueError if the range is not wholly free.
        """
        if size <= 0:
            raise ValueError("empty range")
        node, path, visits = self._enclosing(addr)
        if node is None or addr + size > node.end:
            raise ValueError(f"KVA {addr:#x}+{size:#x} is not free")
        fit, work = self._clip(node, path, addr, size)
        return visits + work, fit

    def _lowest_match(self, size: int, align: int, vstart: int, length: int):
        """find_vmap_lowest_match(); returns (node, path root..node, visits)."""
        node = self.root
        path: list[_Va] = []
        visits = 0
        mask = align - 1
        while node is not None:
            visits += 1
            path.append(node)
            left = node.left
            if left is not None and left.max >= length and vstart < node.start:
                node = left
                continue
            # is_within_this_va()
            nva = node.start if node.start > vstart else vstart
            nva = (nva + mask) & ~mask
            if nva >= vstart and nva + size <= node.end:
                return node, path, visits
            right = node.right
            if right is not None and right.max >= length:
                node = right
                continue
            # Roll back to the first ancestor with a usable right subtree.
            path.pop()
            node = None
            while path:
                up = path[-1]
                visits += 1
                nva = up.start if up.start > vstart else vstart
                nva = (nva + mask) & ~mask
                if nva >= vstart and nva + size <= up.end:
                    return up, path, visits
                right = up.right
                if right is not None and right.max >= length and vstart <= up.start:
                    vstart = up.start + 1
                    node = right
                    break
                path.pop()
        return None, path, visits

    def _enclosing(self, addr: int):
        """pvm_find_va_enclose_addr(): the free block with start <= addr < end."""
        n = self.root
        path: list[_Va] = []
        visits = 0
        while n is not None:
            visits += 1
            path.append(n)
            if addr < n.start:
                n = n.left
            elif addr >= n.end:
                n = n.right
            else:
                return n, path, visits
        return None, path, visits

    def _clip(self, node: _Va, path: list[_Va], nva: int, size: int):
        """va_clip() of ``node`` (== path[-1]); returns (fit, nodes touched)."""
        end = nva + size
        self._free -= size
        if nva == node.start:
            if end == node.end:
                self.released += 1
                return "FL", self._unlink(path, len(path) - 1)
            node.start = end
            return "LE", self._propagate(path, len(path) - 1)
        if end == node.end:
            node.end = nva
            return "RE", self._propagate(path, len(path) - 1)
        # NE: the preloaded spare vmap_area becomes the left remainder
        left_start = node.start
        node.start = end
        work = self._propagate(path, len(path) - 1)
        return "NE", work + self._insert_from_root(left_start, nva)

    # -- free ------------------------------------------------------------------
    def free(self, addr: int, size: int) -> int:
        """__merge_or_add_vmap_area() + propagate. Returns visits."""
        if size <= 0:
            raise ValueError("empty range")
        end = addr + size
        path: list[_Va] = []
        prev_i = next_i = -1
        n = self.root
        # find_va_links(): descend to the link point, refusing overlaps
        while n is not None:
            path.append(n)
            if end <= n.start:
                next_i = len(path) - 1
                n = n.left
            elif addr >= n.end:
                prev_i = len(path) - 1
                n = n.right
            else:
                raise ValueError(
                    f"freeing KVA {addr:#x}-{end:#x} overlaps free "
                    f"{n.start:#x}-{n.end:#x}"
                )
        visits = len(path)
        searched = visits
        self._free += size
        nxt = path[next_i] if next_i >= 0 and path[next_i].start == end else None
        prv = path[prev_i] if prev_i >= 0 and path[prev_i].end == addr else None
        if nxt is not None and prv is not None:
            # Both neighbours: grow prev over the range and next, drop next.
            self.released += 2
            prv.end = nxt.end
            visits += self._propagate(path, prev_i)
            visits += self._unlink(path[: next_i + 1], next_i)
        elif nxt is not None:
            self.released += 1
            nxt.start = addr
            visits += self._propagate(path, next_i)
        elif prv is not None:
            self.released += 1
            prv.end = end
            visits += self._propagate(path, prev_i)
        else:
            visits += self._link(path, addr, end)
        self.written = visits - searched
        return visits

    # -- tree mechanics -----------------------------------------------------------
    def _propagate(self, path: list[_Va], i: int) -> int:
        """augment_tree_propagate_from(path[i]): stop when a node is unchanged."""
        touched = 0
        while i >= 0:
            n = path[i]
            touched += 1
            old = n.max
            _pull(n)
            if n.max == old:
                break
            i -= 1
        return touched

    def _replace_child(self, path: list[_Va], i: int, new: _Va | None) -> None:
        old = path[i]
        if i == 0:
            self.root = new
            return
        parent = path[i - 1]
        if parent.left is old:
            parent.left = new
        else:
            parent.right = new

    def _unlink(self, path: list[_Va], i: int) -> int:
        """unlink_va_augment(path[i]): join its subtrees, fix the ancestors."""
        node = path[i]
        self._touched = 0
        joined = self._join(node.left, node.right)
        self._replace_child(path, i, joined)
        self._n -= 1
        node.left = node.right = None
        touched = 1 + self._touched
        if i > 0:
            touched += self._propagate(path, i - 1)
        return touched

    def _join(self, a: _Va | None, b: _Va | None) -> _Va | None:
        # every key of a is below every key of b
        if a is None:
            return b
        if b is None:
            return a
        self._touched += 1
        if a.prio > b.prio:
            a.right = self._join(a.right, b)
            _pull(a)
            return a
        b.left = self._join(a, b.left)
        _pull(b)
        return b

    def _split(self, t: _Va | None, key: int) -> tuple[_Va | None, _Va | None]:
        # blocks starting below key go left
        if t is None:
            return None, None
        self._touched += 1
        if t.start < key:
            lo, hi = self._split(t.right, key)
            t.right = lo
            _pull(t)
            return t, hi
        lo, hi = self._split(t.left, key)
        t.left = hi
        _pull(t)
        return lo, t

    def _link(self, path: list[_Va], start: int, end: int) -> int:
        """link_va_augment() at the end of ``path`` (the search path for start)."""
        new = _Va(start, end, self._bits(62))
        self._n += 1
        k = 0
        while k < len(path) and path[k].prio > new.prio:
            k += 1
        self._touched = 0
        if k < len(path):
            new.left, new.right = self._split(path[k], start)
            _pull(new)
            self._replace_child(path, k, new)
        else:
            parent = path[-1] if path else None
            if parent is None:
                self.root = new
            elif start < parent.start:
                parent.left = new
            else:
                parent.right = new
        touched = 1 + self._touched
        if k > 0:
            touched += self._propagate(path, k - 1)
        return touched

    def _insert_from_root(self, start: int, end: int) -> int:
        """insert_vmap_area_augment(): descend to the link point, then link."""
        path: list[_Va] = []
        n = self.root
        while n is not None:
            path.append(n)
            n = n.left if start < n.start else n.right
        return len(path) + self._link(path, start, end)
