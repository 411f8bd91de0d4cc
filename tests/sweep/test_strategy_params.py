"""Sweeping a strategy's parameters: ``strategy.params.NAME`` as an axis.

bpf_prog_pack's pack size and chunk size, swept over 300 BPF programs:
smaller packs mean more packs allocated and more vmalloc() calls per
program loaded (each load also makes vmalloc() calls of its own, and how
many loads end in the run's 2 ms depends on their cost); larger
chunks round every image up further, so the same programs fill more packs
and more of the memory set aside is waste, once a pack more is needed.
"""

from __future__ import annotations

import csv
import json

from simcore.sweep.points import expand
from simcore.sweep.spec import load_sweep

SWEEP = """\
name: pack-sweep
base:
  name: pack-sweep
  duration: 2ms
  machine: {profile: small-test}
  strategy: bpf_prog_pack
  workloads:
    - type: bpf_jit
      programs: 300
      size: {dist: lognormal, median: 500B, p75: 2KiB}
parameters:
  grid:
    strategy.params.pack_size: [64K, 256K]
    strategy.params.chunk_size: [64B, 1K]
metrics:
  - mem.exec.region_allocs
  - alloc.vmalloc.count
  - alloc.bpf_prog_load.count
  - mem.exec.waste_bytes
x: strategy.params.chunk_size
"""


def test_pack_and_chunk_size_sweep_as_expected(tmp_path, write, cli):
    spec = write(SWEEP, "s.yaml")
    points = expand(load_sweep(spec))
    # each point records its params in its config, and hashes apart
    got = [p.config["strategy"][0]["params"] for p in points]
    assert got[0] == {"chunk_size": "64B", "pack_size": "64K"}
    assert len({p.config_hash for p in points}) == 4
    out = tmp_path / "out"
    code, _, err = cli("sweep", str(spec), "-o", str(out), "--workers", "1", "--quiet")
    assert code == 0, err
    with (out / "sweep.csv").open(newline="") as f:
        rows = {
            (r["strategy.params.pack_size"], r["strategy.params.chunk_size"]): r
            for r in csv.DictReader(f)
        }

    def m(pack: str, chunk: str, metric: str) -> float:
        assert rows[pack, chunk]["status"] == "ok"
        return float(rows[pack, chunk][metric])

    def per_load(pack: str, chunk: str) -> float:
        loads = m(pack, chunk, "alloc.bpf_prog_load.count")
        return m(pack, chunk, "alloc.vmalloc.count") / loads

    for chunk in ("64B", "1K"):
        assert m("64K", chunk, "mem.exec.region_allocs") > m(
            "256K", chunk, "mem.exec.region_allocs"
        )
        assert per_load("64K", chunk) > per_load("256K", chunk)
    # 64K packs: 1K chunks need more packs for the same programs, and the
    # memory set aside but not asked for grows; 256K packs: five hold the
    # programs either way, so the rounding only moves bytes inside them
    # (the pack's unused tail becomes rounding) and the waste stays
    assert m("64K", "1K", "mem.exec.region_allocs") > m(
        "64K", "64B", "mem.exec.region_allocs"
    )
    assert m("64K", "1K", "mem.exec.waste_bytes") > m(
        "64K", "64B", "mem.exec.waste_bytes"
    )
    assert m("256K", "1K", "mem.exec.waste_bytes") >= m(
        "256K", "64B", "mem.exec.waste_bytes"
    )
    # every point file keeps its resolved config, params and all
    for f in (out / "points").glob("*.json"):
        doc = json.loads(f.read_text())
        params = doc["config"]["strategy"][0]["params"]
        assert [params[k] for k in ("pack_size", "chunk_size")] == list(
            doc["parameters"].values()
        )


def test_a_bad_swept_param_points_at_the_sweep_file(write, cli):
    spec = write(SWEEP.replace("[64B, 1K]", "[64B, 100B]"), "s.yaml")
    code, _, err = cli("sweep", str(spec), "--quiet")
    assert code == 2, err
    assert (
        "s.yaml:14 at parameters.grid.strategy.params.chunk_size[1]" in err
        and "chunk_size" in err
        and "power of two" in err
    )
