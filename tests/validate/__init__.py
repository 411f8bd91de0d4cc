"""Helpers for the validation tests: a small, valid case file."""

from __future__ import annotations

GOOD = """\
name: {name}
title: a static key
area: text_poke batching
suitability: direct
source: {{ref: "msg@example.org", where: cover, machine: "24 CPUs"}}
workload:
  duration: 2ms
  machine: {{profile: small-test}}
  kernel: {{preset: "6.1"}}
probe: {{type: static_key, sites: 4, toggles: 2, interval: 10us}}
series:
  per_site: {{set: {{probe.batched: false}}}}
  batched: {{set: {{probe.batched: true}}}}
x:
  param: probe.sites
  label: sites
  values: [2, 4]
measure:
  value: "m('text_poke.sync_rounds') / m('alloc.static_key_update.count')"
  label: rounds per toggle
published:
  per_site: {{2: "6", 4: "12"}}
  batched: {{2: "3", 4: "3"}}
criterion: {{quantity: ratio, num: per_site, den: batched, at: 4}}
quick: {{x: [4]}}
"""


def write_case(tmp_path, text, name="toy-case"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(text.format(name=name) if "{name}" in text else text)
    return p
