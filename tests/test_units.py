import pytest

from simcore.units import (
    format_duration,
    format_size,
    parse_duration,
    parse_ns,
    parse_pages,
    parse_rate,
    parse_size,
)


@pytest.mark.parametrize(
    "text,value",
    [
        ("4K", 4096),
        ("2MiB", 2 << 20),
        ("500B", 500),
        ("1G", 1 << 30),
        ("1.5K", 1536),
        (4096, 4096),
        ("3 MiB", 3 << 20),
    ],
)
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", ["-4K", -1, "4X", "abc", True, "0.5B", None])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize(
    "text,ns", [("200ms", 200_000_000), ("1.5us", 1500), ("3s", 3 * 10**9), ("7ns", 7)]
)
def test_durations(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("bad", ["200", 200, "-1ms", "0.5ns", "1h", "ms"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_rates():
    assert parse_rate("50/s") == 50.0
    assert parse_rate("100k/s") == 100_000.0
    assert parse_rate("2/ms") == 2000.0
    with pytest.raises(ValueError):
        parse_rate("-5/s")
    with pytest.raises(ValueError):
        parse_rate("5/h")


def test_round_trip_forms():
    assert format_size(2 << 20) == "2M"
    assert format_size(1000) == "1000B"
    assert format_duration(200_000_000) == "200ms"
    assert format_duration(1500) == "1500ns"


def test_fractional_nanoseconds_for_hardware_costs():
    assert parse_ns("0.5ns") == 0.5
    assert parse_ns("1.5us") == 1500 and isinstance(parse_ns("1.5us"), int)
    assert parse_ns(3.2) == 3.2
    for bad in ("-1ns", "5", "1h", True, -2):
        with pytest.raises(ValueError):
            parse_ns(bad)


def test_page_counts_take_sizes():
    assert parse_pages(8192) == parse_pages("8192") == parse_pages("32MiB") == 8192
    assert parse_pages(0) == 0
    for bad in ("1000B", "4.5K", -1, "lots"):
        with pytest.raises(ValueError):
            parse_pages(bad)
