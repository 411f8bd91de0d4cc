"""Brute-force reference TLBs the models are tested against."""

from __future__ import annotations

from simcore.hw.tlb import L1_HIT, STLB_HIT, WALK, TlbGeometry

MASK64 = (1 << 64) - 1


class RefCore:
    """Obviously correct LRU per set (lists, MRU last) of (vpn, shift, thread)
    keys; a shared array is one list of sets for the core."""

    def __init__(self, geometry: TlbGeometry, threads: int) -> None:
        self.geometry = geometry
        self.threads = threads
        self.store: dict = {}

    def _arrays(self, level: str, thread: int):
        for ai, spec in enumerate(self.geometry.level(level)):
            owner = "core" if spec.sharing == "shared" else thread
            mine = spec.part(self.threads) if spec.sharing == "partitioned" else spec
            key = (level, ai, owner)
            if key not in self.store:
                self.store[key] = (mine, [[] for _ in range(mine.sets)])
            yield self.store[key]

    def _where(self, level: str, shift: int, thread: int):
        best = None
        for spec, sets in self._arrays(level, thread):
            for s in spec.page_shifts:
                if s <= shift and (best is None or s > best[2]):
                    best = (spec, sets, s)
        return best

    def _access(self, level, addr, shift, thread) -> bool:
        where = self._where(level, shift, thread)
        if where is None:
            return False
        _, sets, s = where
        key = (addr >> s, s, thread)
        lru = sets[(addr >> s) % len(sets)]
        if key in lru:
            lru.remove(key)
            lru.append(key)
            return True
        return False

    def _fill(self, level, addr, shift, thread) -> None:
        where = self._where(level, shift, thread)
        if where is None:
            return
        spec, sets, s = where
        lru = sets[(addr >> s) % len(sets)]
        if len(lru) == spec.ways:
            lru.pop(0)
        lru.append((addr >> s, s, thread))

    def touch(self, thread: int, addr: int, shift: int, side: str) -> int:
        addr &= MASK64
        l1 = "itlb" if side == "i" else "dtlb"
        l2 = "itlb2" if side == "i" and self.geometry.itlb2 else "stlb"
        if self._access(l1, addr, shift, thread):
            return L1_HIT
        if self._access(l2, addr, shift, thread):
            self._fill(l1, addr, shift, thread)
            return STLB_HIT
        self._fill(l2, addr, shift, thread)
        self._fill(l1, addr, shift, thread)
        return WALK

    def _remove(self, thread, drop) -> None:
        for _, sets in self.store.values():
            for lru in sets:
                lru[:] = [k for k in lru if k[2] != thread or not drop(k)]

    def invalidate_range(self, thread, start, end) -> None:
        start &= MASK64
        self._remove(
            thread, lambda k: k[0] << k[1] < end and (k[0] + 1) << k[1] > start
        )

    def flush_all(self, thread, include_global=True) -> None:
        self._remove(thread, lambda k: include_global or (k[0] << k[1]) >> 63 == 0)

    def resident(self, thread: int) -> frozenset:
        return frozenset(
            (level, vpn << s, s)
            for (level, _, _), (_, sets) in self.store.items()
            for lru in sets
            for vpn, s, t in lru
            if t == thread
        )


class RefTlb:
    """A reference CPU alone on its core."""

    def __init__(self, geometry: TlbGeometry) -> None:
        self.core = RefCore(geometry, 1)

    def touch(self, addr: int, shift: int, side: str) -> int:
        return self.core.touch(0, addr, shift, side)

    lookup_one = touch

    def invalidate_range(self, start: int, end: int) -> None:
        self.core.invalidate_range(0, start, end)

    def invalidate_page(self, addr: int) -> None:
        addr &= MASK64
        self.invalidate_range(addr, addr + 1)

    def flush_all(self, include_global: bool = True) -> None:
        self.core.flush_all(0, include_global)

    def resident(self) -> frozenset:
        return self.core.resident(0)
