"""The fast model's kernels: the index of large fully associative arrays,
the PCG64 stream and Zipf bucket tables of the host's draws, the host's
one-call stretch against the generic path, and the on-disk cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simcore.hw import tlb_kernels
from simcore.hw.tlb import TlbArray, TlbGeometry
from simcore.hw.tlb_fast import INDEXED_WAYS
from simcore.hw.tlbs import make_core_tlbs
from simcore.hw.zipf_touch import Pcg64Stream, bucket_bits, zipf_buckets
from tests.workloads import simulation

ROOT = Path(__file__).resolve().parents[2]
USER = 0x7F12_3400_0000
KERNEL = 0xFFFF_C900_0000_0000
MASK64 = (1 << 64) - 1


def _indexed_geometry(l1_sharing: str, stlb_sharing: str) -> TlbGeometry:
    w = INDEXED_WAYS
    return TlbGeometry(
        itlb=(TlbArray((12, 21), w, w, l1_sharing),),
        dtlb=(TlbArray((12, 21, 30), w + 8, w + 8, l1_sharing),),
        stlb=(TlbArray((12, 21), 4 * w, 4 * w, stlb_sharing),),
        itlb2=(TlbArray((12, 21), 64, 8, "shared"),),
    )


def _check_index(tlb) -> None:
    """Every indexed array's list, hash table and first-empty mark agree
    with its tags and stamps."""
    core = tlb._core
    aux = core.aux
    for ai in range(tlb._meta.shape[0]):
        first, _, ways, _, o = (int(v) for v in tlb._meta[ai])
        if o < 0:
            continue
        tags = core.tags[first : first + ways].tolist()
        stamps = core.stamps[first : first + ways].tolist()
        valid = [w for w in range(ways) if tags[w] != -1]
        # the list: every valid way, least recently used first
        order, w = [], int(aux[o])
        while w >= 0:
            order.append(w)
            w = int(aux[o + tlb_kernels.AUX_LINKS + ways + w])
        assert order == sorted(valid, key=stamps.__getitem__)
        assert int(aux[o + 1]) == (order[-1] if order else -1)
        # the hash table: each valid way reachable from its home slot
        mask, shift = int(aux[o + 3]), int(aux[o + 4])
        table = aux[o + tlb_kernels.AUX_LINKS + 2 * ways :][: mask + 1].tolist()
        assert sorted(x for x in table if x >= 0) == valid
        mul = int(tlb_kernels.HASH_MUL)
        for w in valid:
            i = ((tags[w] * mul) & MASK64) >> shift
            while table[i] != w:
                assert table[i] >= 0, "a way cut off from its home slot"
                i = (i + 1) & mask
        # no empty way below the first-empty mark
        assert all(tags[w] != -1 for w in range(int(aux[o + 2])))


@pytest.mark.parametrize(
    "l1_sharing,stlb_sharing",
    [("shared", "shared"), ("private", "partitioned"), ("partitioned", "private")],
)
def test_indexed_arrays_equal_the_exact_model(l1_sharing, stlb_sharing):
    geo = _indexed_geometry(l1_sharing, stlb_sharing)
    rng = np.random.default_rng(11)
    exact = make_core_tlbs(geo, "exact", 2)
    fast = make_core_tlbs(geo, "fast", 2)
    assert fast[0]._meta[:, 4].max() >= 0  # some array is indexed
    for step in range(120):
        t = step % 2
        n = int(rng.integers(1, 400))
        pages = rng.zipf(1.2, n) % 600
        base = np.where(pages % 3 == 0, KERNEL, USER).astype(np.uint64)
        shift = int(rng.choice([12, 12, 12, 21, 30]))
        addrs = base + (pages.astype(np.uint64) << np.uint64(shift))
        side = "id"[step % 3 == 0]
        out_e = np.zeros(n, np.int8)
        out_f = np.zeros(n, np.int8)
        se = exact[t].lookup(addrs, shift, side, outcomes=out_e)
        sf = fast[t].lookup(addrs, shift, side, outcomes=out_f)
        assert se == sf
        assert out_e.tolist() == out_f.tolist()
        act = step % 7
        a = int(addrs[int(rng.integers(n))])
        span = int(rng.integers(1, 40)) * 4096
        for tl in (exact[t], fast[t]):
            if act == 1:
                tl.invalidate_page(a)
            elif act == 2:
                tl.invalidate_range(a, a + span)
            elif act == 3:
                tl.invalidate_range(0, 1 << 47)
            elif act == 4:
                tl.flush_all(include_global=False)
            elif act == 5 and step % 5 == 0:
                tl.flush_all()
        for e, f in zip(exact, fast, strict=True):
            assert e.resident() == f.resident()
            # the same ways, too: the index picks the victim the scan did
            assert e._tags().tolist() == f._tags().tolist()
        _check_index(fast[t])


@pytest.mark.parametrize("seed", [0, 7, 2**40 + 3])
def test_pcg_stream_draws_what_numpy_draws(seed):
    rng = np.random.default_rng(seed)
    stream = Pcg64Stream(np.random.default_rng(seed))
    for k in (0, 1, 3, 1000, 4097):
        assert stream.random(k).tolist() == rng.random(k).tolist()


@pytest.mark.parametrize("n", [1, 64, 1000, 4096])
@pytest.mark.parametrize("zipf", [1.0, 0.8, 1.3])
def test_zipf_bucket_ranks_are_the_drawn_ranks(n, zipf):
    """A bucket's rank is the rank every uniform in it draws: checked at
    random uniforms and at both ends of every bucket."""
    table = zipf_buckets(n, zipf)
    lb = bucket_bits(n)
    assert len(table) == 1 << lb
    per = 1 << (53 - lb)
    grid = np.random.default_rng(n).integers(0, 1 << 53, 200_000, dtype=np.int64)
    ends = np.arange(1 << lb, dtype=np.int64) * per
    grid = np.concatenate([grid, ends, ends + per - 1])
    u = grid.astype(np.float64) * 2.0**-53
    if zipf == 1.0:
        x = np.exp(u * np.log(n + 1.0))
    else:
        a = 1.0 - zipf
        x = (1.0 + u * ((n + 1.0) ** a - 1.0)) ** (1.0 / a)
    ranks = np.minimum(x.astype(np.int64) - 1, n - 1)
    held = table[grid >> (53 - lb)]
    known = held >= 0
    assert (held[known] == ranks[known]).all()
    assert known.mean() > 0.8  # most draws skip the exp


HOST_WL = """\
name: host-kernel
seed: 5
duration: 1ms
machine: {{profile: {profile}, cpus: 2{machine}}}
kernel: {{preset: "6.1", pti: {pti}}}
strategy: bpf_prog_pack
sim: {{tlb_model: {model}}}
host: {host}
workloads:
  - type: bpf_jit
    programs: 8
    exec: {{rate: 200000/s}}
"""
NOPCID = ', cpu: {pcid: {value: false, source: "test", confidence: estimate}}'


@pytest.mark.parametrize(
    "profile,machine,pti,host",
    [
        ("skylake-sp", NOPCID, "auto", "{mm_switches: 20000/s, preset: compile}"),
        ("zen4-genoa", "", "on", "{zipf: 1.2, user_text_huge: true}"),
    ],
)
def test_host_stretch_counts_what_the_generic_path_counts(
    tmp_path, profile, machine, pti, host
):
    """The fast model's one-call host stretch (draws, keeps, lookups and
    counts in the kernel) against the exact model, which draws, looks up
    and counts part by part through Executor.account."""
    got = {}
    for model in ("exact", "fast"):
        text = HOST_WL.format(
            profile=profile, machine=machine, pti=pti, host=host, model=model
        )
        got[model] = simulation(tmp_path, text).run().metrics
    assert got["fast"]["host.instructions"] > 0
    assert got["exact"] == got["fast"]


_CACHE_PROBE = """
import json
from simcore.hw import compiled, tlb_kernels
from simcore.hw.tlb_fast import warm_up

warm_up()
seen = {}
for mod in (tlb_kernels, compiled):
    for name, obj in sorted(vars(mod).items()):
        if getattr(obj, "signatures", None):
            st = obj.stats
            seen[name] = [sum(st.cache_hits.values()), sum(st.cache_misses.values())]
print(json.dumps(seen))
"""


def test_a_second_process_loads_the_kernels_from_the_disk_cache():
    """cache=True: the first process compiles (or loads) every kernel, the
    second finds each one on disk and compiles none."""
    runs = [
        subprocess.run(
            [sys.executable, "-c", _CACHE_PROBE],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        for _ in range(2)
    ]
    second = json.loads(runs[1].stdout)
    assert {"lookup_kernel", "host_kernel", "footprint", "gather"} <= set(second)
    for name, (hits, misses) in second.items():
        assert misses == 0, f"{name} was compiled again"
        assert hits > 0, name
