"""Page touches per second of the ``exact`` and ``fast`` TLB models.

Both models run the same streams on a Skylake-SP geometry, starting cold,
fed in batches as the simulator does; the table gives the median of a few
repetitions (three times as many for ``fast``, whose runs are short) and
checks that both models counted the same misses.

    python benchmarks/bench_tlb.py [--quick] [--batch N] [--reps N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

try:
    import simcore  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simcore.hw.tlb import TlbGeometry, TlbStats
from simcore.hw.tlbs import make_tlb

USER_4K = 0x7F12_3400_0000
KERNEL_4K = 0xFFFF_C900_0000_0000  # vmalloc space: global entries
USER_2M = 0x7F00_0000_0000
KERNEL_1G = 0xFFFF_8880_0000_0000  # direct map


def zipf_pages(rng, pages: int, n: int, alpha: float = 0.99) -> np.ndarray:
    p = 1.0 / np.arange(1, pages + 1) ** alpha
    ranks = rng.choice(pages, size=n, p=p / p.sum())
    return rng.permutation(pages)[ranks]  # popular pages scattered over sets


def at(base: int, idx: np.ndarray, shift: int) -> np.ndarray:
    """Addresses of pages ``idx`` of size ``1 << shift`` from ``base``."""
    return np.uint64(base) + (idx.astype(np.uint64) << np.uint64(shift))


def make_streams(n: int, seed: int = 1) -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    streams = []

    idx = zipf_pages(rng, 4096, n)
    streams.append(("zipf 4K, 4096 pages", at(KERNEL_4K, idx, 12), 12))

    idx = rng.integers(0, 20_000, n)
    streams.append(("uniform 4K, 20000 pages", at(USER_4K, idx, 12), 12))

    idx = np.arange(n) % (1536 + 128)  # one page more than every STLB set holds
    streams.append(("cyclic 4K, 1664 pages", at(USER_4K, idx, 12), 12))

    idx = zipf_pages(rng, 4096, n)
    shifts = rng.choice(np.array([12, 21, 30], dtype=np.uint8), n, p=[0.7, 0.25, 0.05])
    bases = np.select(
        [shifts == 12, shifts == 21], [KERNEL_4K, USER_2M], default=KERNEL_1G
    ).astype(np.uint64)
    addrs = bases + (idx.astype(np.uint64) << shifts.astype(np.uint64))
    streams.append(("zipf 4K/2M/1G mix", addrs, shifts))

    out = []
    for name, addrs, shifts in streams:
        shifts = np.broadcast_to(np.asarray(shifts, dtype=np.uint8), addrs.shape)
        out.append((name, addrs, np.ascontiguousarray(shifts)))
    return out


def run(model: str, geometry, addrs, shifts, batch: int) -> tuple[float, TlbStats]:
    tlb = make_tlb(geometry, model)
    total = TlbStats()
    t0 = time.perf_counter()
    for lo in range(0, addrs.shape[0], batch):
        total = total + tlb.lookup(addrs[lo : lo + batch], shifts[lo : lo + batch], "d")
    return time.perf_counter() - t0, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short streams")
    ap.add_argument("--batch", type=int, default=4096, help="touches per lookup()")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (median kept)")
    args = ap.parse_args(argv)

    n = 100_000 if args.quick else 500_000
    geometry = TlbGeometry.skylake_sp()
    streams = make_streams(n)

    # Compile (or load the cached) numba kernels before any timing.
    t0 = time.perf_counter()
    from simcore.hw.tlb_fast import warm_up

    warm_up()
    run("fast", geometry, streams[0][1][:10_000], streams[0][2][:10_000], args.batch)
    warm = time.perf_counter() - t0

    print(
        f"TLB model throughput, Skylake-SP geometry, {n} touches per stream, "
        f"batch {args.batch}, median of {args.reps}"
    )
    print(f"numba warm-up (compile or cache load): {warm:.2f} s")
    header = (
        f"{'stream':<26}{'walk ratio':>11}{'exact M/s':>11}{'fast M/s':>10}"
        f"{'fast/exact':>12}{'same':>6}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for name, addrs, shifts in streams:
        rate = {}
        stats = {}
        for model in ("exact", "fast"):
            times = []
            # a fast run takes milliseconds: repeat it more to damp noise
            for _ in range(args.reps * (3 if model == "fast" else 1)):
                dt, st = run(model, geometry, addrs, shifts, args.batch)
                times.append(dt)
                stats[model] = st
            rate[model] = n / statistics.median(times)
        same = stats["exact"] == stats["fast"]
        ok &= same
        walk = stats["fast"].stlb_misses / n
        print(
            f"{name:<26}{walk:>11.3f}{rate['exact'] / 1e6:>11.2f}"
            f"{rate['fast'] / 1e6:>10.1f}{rate['fast'] / rate['exact']:>11.0f}x"
            f"{'yes' if same else 'NO':>6}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
