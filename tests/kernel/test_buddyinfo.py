"""/proc/buddyinfo captures: parsing, errors with line numbers, seeding."""

import pytest

from simcore.errors import CaptureError
from simcore.kernel.buddyinfo import load_buddyinfo, parse_buddyinfo
from simcore.kernel.page_alloc import BuddyAllocator, PageAlloc
from tests.kernel import make_sim

CAPTURE = """\
Node 0, zone      DMA      1      1      1      0      2      1      1      0      1      1      3
Node 0, zone    DMA32   3214   2871   1903    911    407    178     53     16      4      2    601
Node 0, zone   Normal  22361  13084   6350   1834    506    116     28      7      0      0      0
Node 0, zone  Movable      5      5      5      5      5      5      5      5      5      5      5

Node 1, zone   Normal   1000    500    250    125     60     30     15      8      4      2    100
"""


def test_parses_zones_and_sums_kernel_zones():
    info = parse_buddyinfo(CAPTURE, file="cap")
    assert info.nodes() == [0, 1]
    assert info.zones[(0, "Normal")][0] == 22361
    n0 = info.node_counts(0)
    # DMA + DMA32 + Normal; Movable only serves __GFP_MOVABLE.
    assert n0[0] == 1 + 3214 + 22361
    assert n0[10] == 3 + 601 + 0
    assert info.node_counts(0, zones=("Movable",)) == [5] * 11
    assert info.free_pages(1) == sum(c << k for k, c in enumerate(info.node_counts(1)))


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("Node 0, zone   Normal  1 2 3 4 5 6 7 8 9 10", "10 order columns"),
        ("Node 0, zone   Normal  1 2 3 4 5 6 7 8 9 10 x", "'x' is not a number"),
        ("Node 0, zone   Normal  1 2 3 4 5 6 7 8 9 10 -1", "negative free-block count"),
        ("Node 0, zone   Normel  1 2 3 4 5 6 7 8 9 10 11", "unknown zone"),
        ("Node zero, zone Normal 1 2 3 4 5 6 7 8 9 10 11", "not a /proc/buddyinfo"),
        ("Node 0, zone      DMA  1 2 3 4 5 6 7 8 9 10 11", "appears twice"),
    ],
)
def test_malformed_line_names_its_line(line, what):
    text = CAPTURE.splitlines()[0] + "\n\n" + line + "\n"
    with pytest.raises(CaptureError) as exc:
        parse_buddyinfo(text, file="buddyinfo.txt")
    err = exc.value
    assert err.line == 3
    assert err.file == "buddyinfo.txt"
    assert what in err.message
    assert "buddyinfo.txt:3" in err.render()


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(CaptureError, match="no zone lines"):
        parse_buddyinfo("\n\n")
    with pytest.raises(CaptureError, match="cannot read"):
        load_buddyinfo(tmp_path / "nope.txt")


def test_seeding_reproduces_the_capture_exactly():
    info = parse_buddyinfo(CAPTURE)
    counts = [info.node_counts(0), info.node_counts(1)]
    b = BuddyAllocator([1 << 20, 1 << 18], buddyinfo=counts)
    assert b.buddyinfo(0) == counts[0]
    assert b.buddyinfo(1) == counts[1]
    b.check(full=True)
    for node in (0, 1):
        assert b.nr_free_pages >= info.free_pages(node)
    assert b.nr_free_pages == info.free_pages(0) + info.free_pages(1)


def test_capture_larger_than_the_node_is_refused():
    counts = [0] * 10 + [2000]  # 8 GiB of order-10 blocks
    with pytest.raises(CaptureError, match="do not fit"):
        BuddyAllocator([1 << 20], buddyinfo=[counts], buddyinfo_file="big")
    dense = [300_000] + [0] * 10  # order-0 blocks each need a used buddy
    with pytest.raises(CaptureError, match="without mergeable buddies"):
        BuddyAllocator([1 << 19], buddyinfo=[dense])


def test_simulation_seeds_from_a_capture_next_to_the_workload(tmp_path):
    one_node = "\n".join(CAPTURE.splitlines()[:3]) + "\n"
    (tmp_path / "buddyinfo.txt").write_text(one_node)
    sim = make_sim(kernel="{preset: latest, buddyinfo: buddyinfo.txt}", where=tmp_path)
    pa = PageAlloc(sim.kernel)
    assert pa.buddy.buddyinfo(0) == parse_buddyinfo(one_node).node_counts(0)
    assert sim.metrics.counters["buddy.free_pages"] == pa.buddy.nr_free_pages


def test_simulation_refuses_a_capture_with_other_nodes(tmp_path):
    (tmp_path / "two.txt").write_text(CAPTURE)
    with pytest.raises(CaptureError, match="NUMA node"):
        make_sim(kernel="{preset: latest, buddyinfo: two.txt}", where=tmp_path)


def test_a_relative_capture_is_also_found_from_the_current_directory(
    tmp_path, monkeypatch
):
    one_node = "\n".join(CAPTURE.splitlines()[:3]) + "\n"
    (tmp_path / "captures").mkdir()
    (tmp_path / "captures" / "bi.txt").write_text(one_node)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path)
    sim = make_sim(
        kernel="{preset: latest, buddyinfo: captures/bi.txt}", where=tmp_path / "work"
    )
    pa = PageAlloc(sim.kernel)  # a fresh one: make_sim's own run used pages
    assert pa.buddy.buddyinfo(0) == parse_buddyinfo(one_node).node_counts(0)
