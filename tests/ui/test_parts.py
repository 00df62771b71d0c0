"""The dashboard's pure parts: charts, the segment layout, the words of both languages."""

from __future__ import annotations

import re
from pathlib import Path

from hub.queue.replay import REPLAYABLE
from hub.services.referral.rules import load_rules
from hub.ui import charts, hl7view
from hub.ui.i18n import EN, TEXT, ZH, translator
from hub.ui.records import STATUSES

UI = Path(__file__).resolve().parents[2] / "hub" / "ui"


def test_bars_carry_their_values_and_labels_are_escaped() -> None:
    svg = charts.bar_chart(
        ["QSWSY", "<b>x</b>"],
        [charts.Series("accepted", [3, 0]), charts.Series("repeated", [1, 2])],
        title="a & b",
    )
    assert svg.startswith("<svg") and 'data-points="3"' in svg
    assert len(re.findall(r'<rect class="bar s\d"', svg)) == 3
    assert "<b>x</b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg
    assert 'aria-label="a &amp; b"' in svg
    # Counts get whole ticks: 0..4 for a peak of 4, never 0.25 of a message.
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]*)</text>', svg)
    assert ticks == ["0", "1", "2", "3", "4"]


def test_a_chart_without_data_says_so() -> None:
    svg = charts.bar_chart(["a"], [charts.Series("x", [0])], title="t", empty_text="暂无数据")
    assert 'data-points="0"' in svg and "暂无数据" in svg and "<rect" not in svg
    assert 'data-points="0"' in charts.hbar_chart([], [], title="t")


def test_a_zero_is_drawn_in_horizontal_bars_and_sparklines_mark_errors() -> None:
    svg = charts.hbar_chart(["XRMYY", "XZYY"], [0, 12.5], title="minutes")
    assert 'data-points="2"' in svg and ">0</text>" in svg and "12.5" in svg
    spark = charts.sparkline([0, 4, 2], errors=[0, 1, 0], title="24 h")
    assert spark.count('class="bar s0"') == 2 and spark.count('class="bar err"') == 1


def test_axis_tops_are_round() -> None:
    assert [charts.nice_ceiling(v) for v in (0, 0.7, 3, 7, 23, 180)] == [1, 1, 5, 10, 25, 200]


def test_segments_are_laid_out_with_msh_numbering_and_flagged_places() -> None:
    raw = (
        "MSH|^~\\&|LIS|XJYZX|YGT_HUB|YGT|20261021||ORU^R01|C1|P|2.5.1\r"
        "PID|1||ZY1^^^XRMYY^MR||张^三\r"
        "OBX|1|NM|WBC^白细胞||one hundred|10*9/L\r"
    ).encode("gb18030")
    laid = hl7view.lay_out(raw, "GB18030", error="AE 102 OBX-5: not a number")
    msh, pid, obx = laid.segments
    fields = {f.number: f.value for f in msh.fields}
    assert fields[1] == "|" and fields[2] == "^~\\&" and fields[9] == "ORU^R01"
    assert fields[10] == "C1"
    assert {f.number: f.value for f in pid.fields}[5] == "张^三"
    assert obx.flagged and [f.number for f in obx.fields if f.flagged] == [5]
    assert not pid.flagged and laid.charset == "gb18030"


def test_what_cannot_be_decoded_or_is_not_hl7_is_still_shown() -> None:
    broken = hl7view.lay_out(b"MSH|^~\\&|A|B\rPID|1||\xff\xfe", "UTF-8")
    assert broken.charset == "utf-8 (replaced)" and "\ufffd" in broken.text
    rows = hl7view.lay_out(b'{"rows": [{"id": 1}]}', "UTF-8")
    assert rows.segments == [] and '"rows"' in rows.text


def _used_keys() -> set[str]:
    found: set[str] = set()
    for path in [*UI.glob("templates/*.html"), *UI.glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        found |= set(re.findall(r"""\bt\(\s*["']([a-z][\w.-]*)["']""", text))
        named = r"""(?:text_key|title_key|error)=["']([a-z]+\.[\w.-]+)["']"""
        found |= set(re.findall(named, text))
    # Keys ending in "." are prefixes completed from data: checked one by one below.
    return {k for k in found if not k.endswith(".")}


def test_every_word_the_pages_use_is_in_both_languages() -> None:
    missing = sorted(k for k in _used_keys() if k not in TEXT)
    assert not missing, missing
    # Keys made from data: every status, direction and Task state the hub knows.
    rules = load_rules()
    dynamic = [f"status.{s}" for s in (*STATUSES, *REPLAYABLE)]
    dynamic += [f"direction.{d}" for d in rules.directions]
    dynamic += [f"task.{s}" for s in rules.states]
    dynamic += [f"gender.{g}" for g in ("male", "female", "other", "unknown")]
    dynamic += [f"replay.{o}" for o in ("requeued", "applied", "failed", "still rejected")]
    dynamic += ["reviews.decided.same", "reviews.decided.different"]
    assert not [k for k in dynamic if k not in TEXT]
    for key, (zh, en) in TEXT.items():
        assert zh and en, key
    assert translator(ZH)("nav.feeds") == "成员与接口"
    assert translator(EN)("nav.feeds") == "Members and feeds"
    assert translator(EN)("status.unheard-of", "unheard-of") == "unheard-of"
