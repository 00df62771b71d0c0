"""Names as pinyin: readings, surnames with their own readings, Latin spellings, the key."""

from __future__ import annotations

import pytest

from hub.services.identity.names import MAX_FORMS, name_key, pinyin_forms


def test_hanzi_reads_as_toneless_ascii() -> None:
    assert pinyin_forms("张伟") == {"zhangwei"}
    assert pinyin_forms("张 伟") == {"zhangwei"}


def test_homophones_share_a_reading_and_a_key() -> None:
    assert pinyin_forms("张伟") & pinyin_forms("章伟")
    assert pinyin_forms("张伟") & pinyin_forms("张玮")
    assert name_key("张伟") == name_key("章伟") == name_key("张玮") == "weizhang"


@pytest.mark.parametrize(
    "written", ["Zhang Wei", "ZHANG Wei", "Zhang^Wei", "wei zhang", "ZhangWei"]
)
def test_latin_spellings_meet_the_hanzi(written: str) -> None:
    assert "zhangwei" in pinyin_forms(written)
    assert name_key(written) == name_key("张伟") == "weizhang"


def test_latin_names_in_both_orders() -> None:
    assert pinyin_forms("SMITH John") == pinyin_forms("John Smith") == {"smithjohn", "johnsmith"}
    assert name_key("SMITH John") == name_key("john smith") == "johnsmith"


def test_a_longer_given_name_segments_into_syllables() -> None:
    assert name_key("张小明") == name_key("Zhang Xiaoming") == name_key("XIAOMING zhang")


@pytest.mark.parametrize(
    ("name", "reading"),
    [
        ("单雄信", "shanxiongxin"),
        ("曾国藩", "zengguofan"),
        ("区志强", "ouzhiqiang"),
        ("仇英", "qiuying"),
        ("解缙", "xiejin"),
        ("查良镛", "zhaliangyong"),
        ("朴槿惠", "piaojinhui"),
        ("尉迟恭", "yuchigong"),
        ("欧阳娜娜", "ouyangnana"),
    ],
)
def test_surname_readings(name: str, reading: str) -> None:
    assert reading in pinyin_forms(name)


def test_surname_reading_leads_the_key() -> None:
    assert name_key("单雄信") == name_key("Shan Xiongxin")
    assert name_key("曾国藩") == name_key("Zeng Guofan")


def test_polyphonic_characters_give_their_readings_within_the_cap() -> None:
    forms = pinyin_forms("单雄信")
    assert {"shanxiongxin", "danxiongxin"} <= forms
    long_name = "阿卜杜拉·买买提·艾力"
    assert 1 < len(pinyin_forms(long_name)) <= MAX_FORMS


def test_u_umlaut_spellings() -> None:
    assert {"lvbu", "lubu", "lyubu"} <= pinyin_forms("吕布")
    assert name_key("吕布") == name_key("LYU Bu") == name_key("Lv Bu") == name_key("Lu Bu")


def test_all_forms_are_lowercase_ascii_letters() -> None:
    for name in ("张三之子", "Zhang-Wei", "O'Brien Mary", "欧阳娜娜"):
        for form in pinyin_forms(name):
            assert form.isascii() and form.isalpha() and form == form.lower()


def test_no_name() -> None:
    assert pinyin_forms("") == frozenset()
    assert pinyin_forms(" - ") == frozenset()
    assert name_key("") is None
    assert name_key("·") is None


def test_different_names_have_different_keys() -> None:
    assert name_key("张伟") != name_key("张强")
    assert not pinyin_forms("张伟") & pinyin_forms("王伟")
