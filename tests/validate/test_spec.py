"""Case files: every shipped case loads; malformed ones fail with a line."""

from __future__ import annotations

import pytest

from simcore.cli import main
from simcore.errors import ConfigError
from simcore.validate.spec import AREAS, case_files, load_case
from simcore.validate.table import COLS
from tests.validate import GOOD, write_case


def test_the_template_is_valid(tmp_path):
    case = load_case(write_case(tmp_path, GOOD))
    assert [(r.series, r.x) for r in case.runs] == [
        ("per_site", 2.0),
        ("per_site", 4.0),
        ("batched", 2.0),
        ("batched", 4.0),
    ]
    quick = load_case(write_case(tmp_path, GOOD), quick=True)
    assert [r.x for r in quick.runs] == [4.0, 4.0]
    # the probe of each run carries the series' and the x value's settings
    assert [r.probe.batched for r in case.runs] == [False, False, True, True]
    assert [r.probe.sites for r in case.runs] == [2, 4, 2, 4]


def _line_of(text, needle):
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


@pytest.mark.parametrize(
    ("old", "new", "message", "needle"),
    [
        ("criterion:", "critera:", "did you mean 'criterion'", "critera:"),
        ("num: per_site", "num: per_sight", "unknown series 'per_sight'", "criterion:"),
        (
            "m('text_poke.sync_rounds')",
            "open('x')",
            "unknown function 'open'",
            "value:",
        ),
        ('preset: "6.1"', 'preset: "9.9"', "unknown kernel preset", "preset"),
        ("probe.batched: false", "probe.batched: maybe", "batched", "per_site:"),
        ("at: 4}", "at: 3}", "x = 3 is not among", "criterion:"),
        (
            '  batched: {2: "3", 4: "3"}',
            '  unbatched: {2: "3"}',
            "is not simulated",
            "unbatched",
        ),
        ("area: text_poke batching", "area: poking", "unknown area", "area:"),
        ("at: 4}", "at: 4, factor: 2}", "say why", "criterion:"),
        (
            "at: 4}",
            "at: 4, factor: 3, why: noisy}",
            "less than or equal to 2",
            "criterion:",
        ),
        ("at: 4}", "at: 4, band: [0, 1]}", "band", "criterion:"),
        (
            'per_site: {2: "6", 4: "12"}',
            "per_site: {2: 6, 4: 12}",
            "as the source printed",
            "published:",
        ),
        (
            'per_site: {2: "6", 4: "12"}',
            'per_site: {2: "6 ms", 4: "12"}',
            "is a time",
            'per_site: {2: "6 ms"',
        ),
        ("values: [2, 4]", "values: [2, 2]", "distinct", "values:"),
    ],
)
def test_malformed_cases_name_the_line(tmp_path, old, new, message, needle):
    text = GOOD.format(name="toy-case")
    assert old in text
    bad = text.replace(old, new)
    with pytest.raises(ConfigError) as info:
        load_case(write_case(tmp_path, bad))
    err = info.value
    assert message in err.render()
    assert err.line == _line_of(bad, needle), err.render()
    assert err.file.endswith("toy-case.yaml")


def test_the_name_is_the_file_name(tmp_path):
    p = write_case(tmp_path, GOOD.format(name="other-name"), name="toy-case")
    with pytest.raises(ConfigError, match="differs from the file name") as info:
        load_case(p)
    assert info.value.line == 1


def test_cli_reports_a_malformed_case_with_exit_code_2(tmp_path, capsys):
    bad = GOOD.format(name="toy-case").replace("criterion:", "critera:")
    p = write_case(tmp_path, bad)
    assert main(["validate", "--case", str(p), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"toy-case.yaml:{_line_of(bad, 'critera:')}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_shipped_cases_load_and_cover_the_issue():
    files = case_files()
    assert len(files) >= 8
    cases = [load_case(f) for f in files]
    quick = [load_case(f, quick=True) for f in files]
    assert all(len(q.runs) <= len(c.runs) for c, q in zip(cases, quick, strict=True))
    areas = {c.spec.area for c in cases}
    required = set(AREAS) - {"module loading", "page allocation", "arena"}
    assert required <= areas
    width = dict((c[0], c[1]) for c in COLS)
    for c in cases:
        # no shipped row is cut short in the table
        assert len(c.name) <= width["case"]
        assert len(c.rule.describe(c.has_x)) <= width["criterion"], c.name


def test_quick_x_is_checked_in_a_full_load_too(tmp_path):
    bad = GOOD.format(name="toy-case").replace("quick: {x: [4]}", "quick: {x: [5]}")
    with pytest.raises(ConfigError, match="x = 5 is not in x.values") as info:
        load_case(write_case(tmp_path, bad))
    assert info.value.line == _line_of(bad, "quick:")


def test_the_suite_is_wide_and_every_criterion_two_sided():
    cases = [load_case(f) for f in case_files()]
    assert len(cases) >= 20
    assert len({c.spec.source.ref for c in cases}) >= 10
    for c in cases:
        assert 1 < c.rule.factor <= 2, c.name
        # a figure kept as printed: every published value is text
        for val in c.spec.published.values():
            for one in val.values() if isinstance(val, dict) else [val]:
                assert isinstance(one, str), c.name
