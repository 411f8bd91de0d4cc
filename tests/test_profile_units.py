"""Hardware profile files and kernel knobs take the workload file's units.

A size in ``hw_profiles/*.yaml`` (a field named ``*_bytes``) may be written
``8GiB``, a time (``*_ns``) ``1.5us`` or ``0.5ns``; a kernel knob counted in
pages (``lazy_max_pages``) takes a size, in a workload's ``kernel:`` and in
the presets. The resolved config records the numbers, so the same machine
written with units or without is the same run.
"""

from __future__ import annotations

import re

import pytest
import yaml

from simcore.config import load as config_load
from simcore.config.load import load_workload
from simcore.errors import ConfigError
from simcore.profile import PROFILE_DIR
from simcore.units import format_size

WORKLOAD = """\
name: units
duration: 100us
machine: {{profile: {profile}}}
kernel: {{preset: latest{kernel}}}
workloads: [{{type: vmalloc_stress, nr_pages: 1}}]
"""


def _profile_with_units(tmp_path, dram: str | None = None):
    """small-test.yaml with its DRAM size and L1 latency written with units."""
    text = (PROFILE_DIR / "small-test.yaml").read_text()
    m = re.search(r"dram_bytes: \{value: (\d+),", text)
    unit = dram or format_size(int(m.group(1)))
    text = text.replace(m.group(0), f"dram_bytes: {{value: {unit},")
    l1 = re.search(r"l1_hit_ns: \{value: ([0-9.]+),", text)
    text = text.replace(l1.group(0), f"l1_hit_ns: {{value: {l1.group(1)}ns,")
    p = tmp_path / "units-test.yaml"
    p.write_text(text)
    return p


def test_a_profile_file_takes_units(tmp_path, write, cli):
    units = _profile_with_units(tmp_path)
    plain = load_workload(write(WORKLOAD.format(profile="small-test", kernel="")))
    code, out, err = cli(
        "check", str(write(WORKLOAD.format(profile=units, kernel=""), "u.yaml"))
    )
    assert code == 0, err
    machine = yaml.safe_load(out)["machine"]
    expect = dict(plain.data["machine"], profile=str(units))
    assert machine == expect
    assert isinstance(machine["memory"]["dram_bytes"], int)


def test_a_bad_unit_in_a_profile_file_names_its_line(tmp_path, write, cli):
    units = _profile_with_units(tmp_path, dram="8 parsecs")
    line = 1 + units.read_text().splitlines().index(
        next(ln for ln in units.read_text().splitlines() if "8 parsecs" in ln)
    )
    code, _, err = cli("check", str(write(WORKLOAD.format(profile=units, kernel=""))))
    assert code == 2
    assert f"{units}:{line} at memory.dram_bytes.value" in err
    assert "expected a size" in err and "Traceback" not in err


def test_a_knob_counted_in_pages_takes_a_size(write, cli):
    r = load_workload(
        write(WORKLOAD.format(profile="small-test", kernel=", lazy_max_pages: 32MiB"))
    )
    assert r.knobs.lazy_max_pages == r.data["kernel"]["lazy_max_pages"] == 8192
    bad = write(
        WORKLOAD.format(profile="small-test", kernel=", lazy_max_pages: 1000B"),
        "bad.yaml",
    )
    code, _, err = cli("check", str(bad))
    assert code == 2
    assert "bad.yaml:4 at kernel.lazy_max_pages" in err and "4 KiB pages" in err


def test_a_preset_value_takes_units(write, monkeypatch):
    real = config_load.preset_values

    def with_size(name, arch="x86_64"):
        return {**real(name, arch), "lazy_max_pages": "64MiB"}

    monkeypatch.setattr(config_load, "preset_values", with_size)
    r = load_workload(write(WORKLOAD.format(profile="small-test", kernel="")))
    assert r.knobs.lazy_max_pages == r.data["kernel"]["lazy_max_pages"] == 16384

    monkeypatch.setattr(
        config_load,
        "preset_values",
        lambda name, arch="x86_64": {**real(name, arch), "lazy_max_pages": "1000B"},
    )
    with pytest.raises(ConfigError) as info:
        load_workload(write(WORKLOAD.format(profile="small-test", kernel=""), "b.yaml"))
    text = info.value.render()
    assert "presets.yaml" in text and '"latest".lazy_max_pages' in text
