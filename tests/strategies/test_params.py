"""Strategy parameters: ``strategy: {name, params}`` and ``strategies:``.

Every parameter is typed, documented with its source, defaults to the
constant the strategy used before it had parameters (so a workload naming
a strategy plainly runs and hashes as before), takes the workload file's
units, is checked with the file, YAML path and line of a bad value, and is
recorded in the resolved config.
"""

from __future__ import annotations

import json

import pytest
import yaml

from simcore.config.load import load_workload
from simcore.engine import Simulation
from simcore.strategies import get_strategy, strategy_names
from simcore.strategies.module_alloc_type import X86_KINDS
from tests.conftest import SMALL
from tests.kernel import make_sim

PACK = SMALL.replace("strategy: module_alloc", "strategy: {pack}")


def _bad(cli, path, *extra):
    code, out, err = cli("check", str(path), *extra)
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_every_parameter_is_typed_documented_and_sourced():
    seen = 0
    for name in strategy_names():
        params = get_strategy(name).Params
        params()  # the defaults validate
        for key, field in params.model_fields.items():
            seen += 1
            assert field.description, (name, key)
            assert (field.json_schema_extra or {}).get("source"), (name, key)
    assert seen >= 10


def test_the_defaults_are_the_constants_the_code_had():
    k = make_sim(machine="{profile: skylake-sp, cpus: 16}").kernel
    pack = get_strategy("bpf_prog_pack")(k)
    assert (pack.chunk, pack.pack_size) == (64, (2 << 20) * 2)  # 2 nodes
    jit = get_strategy("jitalloc")(k)
    assert [c.obj_size_bits for c in jit.caches] == list(range(4, 12))
    assert get_strategy("module_alloc_type")(k).kinds == X86_KINDS
    assert get_strategy("unmapped_cache")(k).params.block_order == 9
    assert get_strategy("perm_alloc")(k).params.block_order == 9
    batched = get_strategy("arena_batched_free")(k)
    assert (batched.batch, batched.delay) == (32, 1_000_000)


def test_params_reach_the_strategy_and_the_resolved_config(write, cli):
    p = write(
        PACK.format(
            pack="{name: bpf_prog_pack, params: {pack_size: 256KiB, chunk_size: 128B}}"
        )
    )
    resolved = load_workload(p)
    st = Simulation(resolved, "bpf_prog_pack").exec_strategy
    assert (st.pack_size, st.chunk, st.chunks) == (256 << 10, 128, 2048)
    assert st.bpf_image_size(100) == 128
    code, out, err = cli("check", str(p))
    assert code == 0, err
    recorded = yaml.safe_load(out)["strategy"]
    assert recorded == [
        {"name": "bpf_prog_pack", "params": {"chunk_size": "128B", "pack_size": "256K"}}
    ]
    # the resolved config, run again, is the same run
    again = write(out, "again.yaml")
    assert load_workload(again).config_hash == resolved.config_hash


def test_defaults_keep_the_config_hash_and_every_default_is_recorded(write):
    plain = load_workload(write(PACK.format(pack="bpf_prog_pack"), "a.yaml"))
    spelled = load_workload(
        write(
            PACK.format(pack="{name: bpf_prog_pack, params: {chunk_size: 64}}"),
            "b.yaml",
        )
    )
    other = load_workload(
        write(
            PACK.format(pack="{name: bpf_prog_pack, params: {chunk_size: 128}}"),
            "c.yaml",
        )
    )
    assert plain.config_hash == spelled.config_hash != other.config_hash
    assert plain.data["strategy"] == [
        {"name": "bpf_prog_pack", "params": {"chunk_size": "64B", "pack_size": None}}
    ]
    # a strategy without parameters stays a plain name
    assert load_workload(write(SMALL, "d.yaml")).data["strategy"] == ["module_alloc"]


def test_one_strategy_twice_under_two_labels(write, cli, tmp_path):
    text = SMALL.replace(
        "strategy: module_alloc",
        """strategies:
  - {name: bpf_prog_pack, label: pack-16k, params: {pack_size: 16K}}
  - bpf_prog_pack""",
    ).replace(
        "type: vmalloc_stress\n    nr_pages: 1", "type: bpf_jit\n    programs: 60"
    )
    out = tmp_path / "out"
    code, _, err = cli("run", str(write(text)), "-o", str(out), "--quiet")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())["strategies"]
    assert list(m) == ["pack-16k", "bpf_prog_pack"]
    assert (
        m["pack-16k"]["mem.exec.region_allocs"]
        > m["bpf_prog_pack"]["mem.exec.region_allocs"]
    )
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert "strategies" not in cfg and cfg["strategy"][0]["label"] == "pack-16k"


def test_set_and_strategy_options_reach_the_params(write):
    p = write(PACK.format(pack="bpf_prog_pack"))
    r = load_workload(p, sets=["strategy.params.chunk_size=256B"])
    assert r.strategy_params["bpf_prog_pack"].chunk_size == 256
    # --strategy keeps the params of a strategy the file configures
    p2 = write(
        PACK.format(
            pack="[module_alloc, {name: bpf_prog_pack, params: {chunk_size: 1K}}]"
        ),
        "two.yaml",
    )
    r = load_workload(p2, strategies=["bpf_prog_pack"])
    assert r.cfg.strategy_labels == ["bpf_prog_pack"]
    assert r.strategy_params["bpf_prog_pack"].chunk_size == 1024


@pytest.mark.parametrize(
    ("strategy", "fragments"),
    [
        (
            "{name: bpf_prog_pack, params: {chunk_size: 100B}}",
            ["w.yaml:8", "strategy.params.chunk_size", "power of two"],
        ),
        (
            "{name: bpf_prog_pack, params: {pack_sise: 1M}}",
            ["w.yaml:8", "strategy.params.pack_sise", "did you mean 'pack_size'"],
        ),
        (
            "[module_alloc, {name: bpf_prog_pack, params: {pack_size: 3 parsecs}}]",
            ["w.yaml:8", "strategy[1].params.pack_size", "expected a size"],
        ),
        (
            "{name: bpf_prog_pack, params: {pack_size: 6K, chunk_size: 4K}}",
            ["strategy.params.pack_size", "whole 4K chunks"],
        ),
        (
            "{name: arena_batched_free, params: {delay: 5}}",
            ["strategy.params.delay", "unit"],
        ),
        (
            "{name: module_alloc_type, params: {types: {module_txt: {huge: no}}}}",
            ["strategy.params.types", "did you mean 'module_text'"],
        ),
        (
            "{name: module_alloc_type, params: {types: {module_text: "
            "{granularity: 2M}}}}",
            ["strategy.params.types.module_text", "binpack"],
        ),
        (
            "{name: module_alloc, params: {x: 1}}",
            ["strategy.params.x", "unknown key 'x'"],
        ),
        (
            "{name: bpf_prog_pak}",
            ["w.yaml:8", "strategy", "did you mean 'bpf_prog_pack'"],
        ),
        (
            "[bpf_prog_pack, {name: bpf_prog_pack, params: {chunk_size: 1K}}]",
            ["w.yaml:8", "listed twice", "label"],
        ),
    ],
)
def test_bad_params_exit_2_at_their_line(cli, write, strategy, fragments):
    err = _bad(cli, write(PACK.format(pack=strategy)))
    for frag in fragments:
        assert frag in err, (frag, err)


def test_strategy_and_strategies_together_are_refused(cli, write):
    text = SMALL.replace(
        "strategy: module_alloc", "strategy: module_alloc\nstrategies: [jitalloc]"
    )
    err = _bad(cli, write(text))
    assert "w.yaml:9 at strategies" in err and "not both" in err


def test_list_strategies_params_documents_every_parameter(cli):
    code, out, err = cli("list", "strategies", "--params")
    assert code == 0, err
    for name in strategy_names():
        assert f"\n{name}: " in out
        for key in get_strategy(name).Params.model_fields:
            assert f"params.{key}" in out
    assert "BPF_PROG_CHUNK_SHIFT" in out and "source:" in out
    assert max(len(line) for line in out.splitlines()) <= 80
