"""How alike two patient records are: exact keys first, then a weighted field score.

Precision comes before recall (a wrong link shows one person's record to another's doctor;
a missed link is a duplicate someone can merge), so:

- a shared valid resident ID, passport or card number is ``certain``;
- two valid resident IDs that differ, or two passports of one country that differ, are
  ``certainly-not`` whatever else agrees (identical twins share everything else);
- otherwise each field scores 0..1 and is weighted; a field missing on either side scores 0
  but keeps its weight, so missing evidence never counts as agreement;
- differing sexes, or a valid ID whose birth date or sex contradicts the other record, halve
  the score;
- without a shared key, an infant's records are never linked automatically (newborn twins
  differ only in the name, 张三之子 / 张三之女): the grade is capped at ``possible``.

Precedence when keys disagree with each other: resident ID, then passport, then cards (a
shared card does not override a resident-ID conflict: cards are lent within families).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, JaroWinkler

from hub.services.identity.features import PASSPORT, RESIDENT_ID, Features
from hub.services.identity.rules import MatchRules

CERTAIN, PROBABLE, POSSIBLE, CERTAINLY_NOT = "certain", "probable", "possible", "certainly-not"
HOMOPHONE = 0.85  # the same pinyin: a homophone typed by an input method, or a Latin spelling
NEAR_NAME = 0.90  # Jaro-Winkler floor for partial credit on the name
NEAR_NAME_MAX = 0.5  # a near name earns at most this (0.9 → 0, 1.0 → 0.5)
ADDRESS_FLOOR = 0.5  # below this two addresses are different places, not a partial match


@dataclass(frozen=True)
class Match:
    score: float
    grade: str
    reasons: tuple[str, ...]


def _keyed(grade: str, reason: str) -> Match:
    return Match(1.0 if grade == CERTAIN else 0.0, grade, (reason,))


_SAME_RESIDENT_ID = _keyed(CERTAIN, "same resident ID")
_OTHER_RESIDENT_ID = _keyed(CERTAINLY_NOT, "different valid resident IDs")
_SAME_PASSPORT = _keyed(CERTAIN, "same passport")
_OTHER_PASSPORT = _keyed(CERTAINLY_NOT, "different passports of one country")
_SAME_CARD = {kind: _keyed(CERTAIN, f"same {kind}") for kind in ("ehealth-card", "insurance-card")}

# Province, prefecture and county units at the start of an address: shared by most of a
# county hub's patients, so they are left out of the comparison.
_ADMIN_UNIT = re.compile(
    r"^[^\s镇乡村路街道号巷弄组]{1,10}?(?:特别行政区|自治区|自治州|地区|省|市|盟|县|区|旗)"
)
_PUNCT = re.compile(r"[\s,，.。、;；:：#\-—()（）]+")


@lru_cache(maxsize=65536)
def _address_core(text: str) -> str:
    norm = _PUNCT.sub(" ", text.lower()).strip()
    if norm.isascii():
        return norm
    norm = norm.replace(" ", "")
    core = norm
    while m := _ADMIN_UNIT.match(core):
        core = core[m.end() :]
    return core or norm


def _near_dates(a: str, b: str) -> bool:
    """One digit different, or day and month swapped."""
    if sum(x != y for x, y in zip(a, b, strict=True)) == 1:
        return True
    return a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]


def _name_score(a: Features, b: Features) -> tuple[float, str]:
    if a.name == b.name or (a.name and b.name and a.name.casefold() == b.name.casefold()):
        return 1.0, "same name"
    if not a.pinyin.isdisjoint(b.pinyin):
        return HOMOPHONE, "same pinyin"
    best = NEAR_NAME
    for form in a.pinyin:
        found = process.extractOne(form, b.pinyin, scorer=JaroWinkler.similarity, score_cutoff=best)
        if found is not None:
            best = max(best, found[1])
    if best > NEAR_NAME:
        return NEAR_NAME_MAX * (best - NEAR_NAME) / (1.0 - NEAR_NAME), "similar name"
    return 0.0, "different name"


def _near_id(valid: str | None, invalid: tuple[str, ...]) -> bool:
    """A flagged ID one typo (a digit or two swapped digits) away from the valid one."""
    return valid is not None and any(OSA.distance(valid, v, score_cutoff=1) <= 1 for v in invalid)


def _age_days(birth: str | None, today: date) -> int | None:
    return (today - date.fromisoformat(birth)).days if birth else None


def score(a: Features, b: Features, rules: MatchRules, *, today: date | None = None) -> Match:
    ka, kb = a.keys, b.keys
    if ka and kb:
        rid_a, rid_b = ka.get(RESIDENT_ID), kb.get(RESIDENT_ID)
        if rid_a and rid_b:
            return _SAME_RESIDENT_ID if rid_a == rid_b else _OTHER_RESIDENT_ID
        pa, pb = ka.get(PASSPORT), kb.get(PASSPORT)
        if pa and pb:
            if pa == pb:
                return _SAME_PASSPORT
            if pa[:4] == pb[:4]:  # "USA:" — the same issuing country
                return _OTHER_PASSPORT
        for kind, value in ka.items():
            if kb.get(kind) == value:
                return _SAME_CARD.get(kind) or _keyed(CERTAIN, f"same {kind}")

    w = rules.weights
    reasons: list[str] = []
    total = 0.0
    if a.name and b.name:
        credit, why = _name_score(a, b)
        total += w.name * credit
        reasons.append(why)
    else:
        reasons.append("name missing")

    birth_a, birth_b = a.birth_date or a.id_birth_date, b.birth_date or b.id_birth_date
    if birth_a and birth_b:
        if birth_a == birth_b:
            total += w.birth_date
            reasons.append("same birth date")
        elif _near_dates(birth_a, birth_b):
            total += w.birth_date * 0.5
            reasons.append("near birth date")
        else:
            reasons.append("different birth date")
    else:
        reasons.append("birth date missing")

    factor = 1.0
    sex_a, sex_b = a.gender or a.id_gender, b.gender or b.id_gender
    if sex_a and sex_b:
        if sex_a == sex_b:
            total += w.gender
        else:
            factor *= 0.5
            reasons.append("different sex")

    if a.phones and b.phones:
        if a.phones.isdisjoint(b.phones):
            reasons.append("different phone")
        else:
            total += w.phone
            reasons.append("same phone")
    else:
        reasons.append("phone missing")

    if a.address and b.address:
        if a.division and b.division and a.division != b.division:
            reasons.append("different division")
        else:
            ratio = fuzz.token_sort_ratio(_address_core(a.address), _address_core(b.address))
            if ratio >= ADDRESS_FLOOR * 100:
                total += w.address * ratio / 100.0
                reasons.append("similar address" if ratio < 100 else "same address")
            else:
                reasons.append("different address")
    else:
        reasons.append("address missing")

    # A valid ID is the better witness of birth date and sex than a typed field.
    if (a.id_birth_date and b.birth_date and a.id_birth_date != b.birth_date) or (
        b.id_birth_date and a.birth_date and b.id_birth_date != a.birth_date
    ):
        factor *= 0.5
        reasons.append("birth date contradicts resident ID")
    if (a.id_gender and b.gender and a.id_gender != b.gender) or (
        b.id_gender and a.gender and b.id_gender != a.gender
    ):
        factor *= 0.5
        reasons.append("sex contradicts resident ID")

    if (a.invalid_ids or b.invalid_ids) and (
        _near_id(ka.get(RESIDENT_ID), b.invalid_ids)
        or _near_id(kb.get(RESIDENT_ID), a.invalid_ids)
        or not set(a.invalid_ids).isdisjoint(b.invalid_ids)
    ):
        total = 1.0 - (1.0 - total) / 2.0  # halfway to certain: the same number, mistyped
        reasons.append("resident ID one typo apart")

    value = min(1.0, max(0.0, total * factor))
    if value >= rules.link:
        grade = PROBABLE
        age_a = _age_days(birth_a, today or date.today())
        age_b = _age_days(birth_b, today or date.today())
        young = [age for age in (age_a, age_b) if age is not None]
        if young and min(young) < rules.auto_link_min_age_days:
            grade = POSSIBLE
            reasons.append("infant without a shared key: review only")
    elif value >= rules.review:
        grade = POSSIBLE
    else:
        grade = CERTAINLY_NOT
    return Match(value, grade, tuple(reasons))


def decision(match: Match, rules: MatchRules) -> str:
    """``link`` (certain or probable), ``review`` (possible) or ``none``.

    The thresholds and the infant rule are already in the grade; ``rules`` is taken so that
    callers need not know that.
    """
    del rules
    if match.grade in (CERTAIN, PROBABLE):
        return "link"
    return "review" if match.grade == POSSIBLE else "none"
