"""Names as pinyin, for matching records written in hanzi, homophones or Latin letters.

Data-entry clerks type names through pinyin input methods, so the common error is a homophone
(张伟 for 章伟); passports, foreign systems and some HIS screens write pinyin (``ZHANG Wei``,
``Zhang^Wei``, ``Wei Zhang``).  Two readings of a name are compared as lowercase toneless
ASCII strings without spaces.

``pinyin_forms`` gives every plausible reading: surnames with their surname readings first
(单 shan, 曾 zeng, 区 ou ...), then the other readings of polyphonic characters, at most
``MAX_FORMS``; ü as v, u and yu (吕: lv, lu, lyu).  A Latin name gives its letters in both
orders (family first, given first).

``name_key`` is the blocking key: the name split into pinyin syllables (hanzi: one reading per
character, the surname reading for the surname; Latin: each word segmented into pinyin
syllables, or kept whole when it is not pinyin), ü written u, syllables sorted and joined.  So
张伟, 章伟, ``Zhang Wei``, ``ZhangWei`` and ``Wei ZHANG`` all give ``weizhang``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import combinations, product

from pypinyin import Style, lazy_pinyin, pinyin

MAX_FORMS = 16
_MAX_READINGS = 4  # per character
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_NOT_CJK = re.compile(r"[^\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")
_WORDS = re.compile(r"[a-z]+")

# Surname readings that differ from the character's everyday reading (pypinyin reads 单 as
# dan, 曾 as ceng); compound surnames are read as their own unit.  Syllables space-separated.
SURNAME_READINGS: dict[str, tuple[str, ...]] = {
    "单": ("shan",),
    "曾": ("zeng",),
    "区": ("ou",),
    "仇": ("qiu",),
    "解": ("xie",),
    "查": ("zha",),
    "朴": ("piao",),
    "乐": ("yue", "le"),
    "盖": ("ge", "gai"),
    "覃": ("qin", "tan"),
    "缪": ("miao",),
    "翟": ("zhai",),
    "秘": ("bi",),
    "种": ("chong",),
    "召": ("shao",),
    "折": ("she",),
    "员": ("yun",),
    "宿": ("su",),
    "柏": ("bai",),
    "能": ("nai",),
    "句": ("gou",),
    "繁": ("po",),
    "黑": ("he",),
    "尉": ("yu", "wei"),
    "尉迟": ("yu chi",),
    "长孙": ("zhang sun",),
    "万俟": ("mo qi",),
    "单于": ("chan yu",),
    "澹台": ("tan tai",),
}
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 夏侯 轩辕 令狐 端木 西门 南宫"
    " 独孤 百里 呼延 万俟 单于 澹台 司空 闻人 东郭 申屠 太史 赫连".split()
)


def is_hanzi(text: str) -> bool:
    return _CJK.search(text) is not None


def split_surname(hanzi: str) -> tuple[str, str]:
    if len(hanzi) > 2 and hanzi[:2] in COMPOUND_SURNAMES:
        return hanzi[:2], hanzi[2:]
    return hanzi[:1], hanzi[1:]


def _u_forms(syllable: str) -> tuple[str, ...]:
    if "v" not in syllable:
        return (syllable,)
    return syllable, syllable.replace("v", "u"), syllable.replace("v", "yu")


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# pypinyin takes ~20 us a call and most of a feed's new patients have a surname, and given
# characters, seen before: readings are kept per character, the usual reading of a given
# name per name (it depends on the neighbouring character).
@lru_cache(maxsize=8192)
def _char_readings(char: str, primary: str) -> tuple[str, ...]:
    others = pinyin(char, style=Style.NORMAL, heteronym=True, errors="default")[0]
    readings = [form for reading in (primary, *others) for form in _u_forms(reading)]
    return _dedupe(readings)[:_MAX_READINGS]


def _hanzi_options(hanzi: str) -> list[tuple[str, ...]]:
    """Per position (the surname first, then each given character) the readings to try,
    the usual one first."""
    surname, given = split_surname(hanzi)
    options = [_surname_options(surname)]
    for char, primary in zip(given, _usual_readings(given), strict=True):
        options.append(_char_readings(char, primary))
    return options


@lru_cache(maxsize=4096)
def _surname_options(surname: str) -> tuple[str, ...]:
    special = [r.replace(" ", "") for r in SURNAME_READINGS.get(surname, ())]
    usual = "".join(lazy_pinyin(surname, style=Style.NORMAL))
    if len(surname) == 1:
        others = pinyin(surname, style=Style.NORMAL, heteronym=True)[0]
        surname_options = _dedupe([f for r in (*special, usual, *others) for f in _u_forms(r)])
    else:
        surname_options = _dedupe([f for r in (*special, usual) for f in _u_forms(r)])
    return surname_options[: _MAX_READINGS + 1]


@lru_cache(maxsize=65536)
def _usual_readings(text: str) -> tuple[str, ...]:
    return tuple(lazy_pinyin(text, style=Style.NORMAL))


def _combine(options: list[tuple[str, ...]], cap: int) -> list[str]:
    """Readings in order of how many positions leave their usual reading, at most ``cap``."""
    base = [o[0] for o in options]
    forms = ["".join(base)]
    variable = [i for i, o in enumerate(options) if len(o) > 1]
    for k in range(1, len(variable) + 1):
        for positions in combinations(variable, k):
            for picks in product(*(options[i][1:] for i in positions)):
                chosen = list(base)
                for i, pick in zip(positions, picks, strict=True):
                    chosen[i] = pick
                form = "".join(chosen)
                if form not in forms:
                    forms.append(form)
                    if len(forms) >= cap:
                        return forms
    return forms


def _latin_words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


@lru_cache(maxsize=65536)
def pinyin_forms(text: str) -> frozenset[str]:
    """Every plausible full-name reading (lowercase ASCII, no spaces), at most MAX_FORMS."""
    hanzi = _NOT_CJK.sub("", text)
    if hanzi:
        return frozenset(_combine(_hanzi_options(hanzi), MAX_FORMS))
    words = _latin_words(text)
    if not words:
        return frozenset()
    # The family name may be first (ZHANG Wei, Zhang^Wei) or last (Wei Zhang).
    orders = (words, words[1:] + words[:1], words[-1:] + words[:-1])
    return frozenset("".join(order) for order in orders)


@lru_cache(maxsize=1)
def _syllables() -> frozenset[str]:
    from pypinyin.contrib.tone_convert import to_normal
    from pypinyin.pinyin_dict import pinyin_dict

    marked = {r for readings in pinyin_dict.values() for r in readings.split(",")}
    normal = {to_normal(r).replace("ü", "v") for r in marked}
    # Interjections without a vowel (m, n, hm, ng) would split foreign names oddly.
    return frozenset(s for s in normal if s.isascii() and s.isalpha() and set(s) & set("aeiouv"))


@lru_cache(maxsize=4096)
def _segment(word: str) -> tuple[str, ...] | None:
    """A word cut into pinyin syllables, longest syllable first; None when it is not pinyin."""
    if not word:
        return ()
    syllables = _syllables()
    for end in range(min(6, len(word)), 0, -1):
        head = word[:end]
        if head in syllables and (rest := _segment(word[end:])) is not None:
            return (head, *rest)
    return None


def _key_syllable(syllable: str) -> str:
    return syllable.replace("v", "u")


@lru_cache(maxsize=65536)
def name_key(text: str) -> str | None:
    """The blocking key: pinyin syllables (ü as u) sorted and joined; None for no name."""
    hanzi = _NOT_CJK.sub("", text)
    if hanzi:
        surname, given = split_surname(hanzi)
        special = SURNAME_READINGS.get(surname)
        head = special[0].split() if special else _usual_readings(surname)
        syllables = [*head, *_usual_readings(given)]
    else:
        syllables = []
        for word in _latin_words(text):
            if word.startswith(("lyu", "nyu")):  # passport spelling of 吕 / 女
                word = word[0] + "v" + word[3:]
            syllables.extend(_segment(word) or (word,))
    if not syllables:
        return None
    return "".join(sorted(_key_syllable(s) for s in syllables))
