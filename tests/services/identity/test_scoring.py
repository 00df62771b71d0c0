"""Scoring pairs of records: exact keys, vetoes, the weighted fields and the hard cases."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.feeds.resident_id import check_character, parse_resident_id
from hub.services.identity.features import Features, features
from hub.services.identity.rules import default_rules_path, load_rules, parse_rules
from hub.services.identity.scoring import Match, decision, score

RULES = load_rules()
SID = "https://ygt.example.org/fhir/sid"
RESIDENT = f"{SID}/resident-id"
TODAY = date(2026, 11, 23)
ADDRESS = "浙江省湖州市德清县青山镇石桥村3组12号"


def rid(first17: str) -> str:
    return first17 + check_character(first17)


ZHANG_WEI = rid("33052119850312001")  # male, born 1985-03-12
TWIN = rid("33052119850312003")


def patient(
    name: str | None = "张伟",
    *,
    gender: str | None = "male",
    birth: str | None = "1985-03-12",
    ids: tuple[tuple[str, str], ...] = (),
    phone: str | None = "13812345678",
    address: str | None = ADDRESS,
) -> Features:
    res: dict[str, Any] = {"resourceType": "Patient"}
    if name:
        res["name"] = [{"use": "official", "text": name}]
    if gender:
        res["gender"] = gender
    if birth:
        res["birthDate"] = birth
    res["identifier"] = [{"system": system, "value": value} for system, value in ids]
    if phone:
        res["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
    if address:
        res["address"] = [{"text": address}]
    return features(res, RULES)


def match(a: Features, b: Features) -> tuple[Match, str]:
    m = score(a, b, RULES, today=TODAY)
    return m, decision(m, RULES)


# -- exact keys and vetoes -----------------------------------------------------------------


def test_a_shared_resident_id_is_certain() -> None:
    a = patient(ids=((RESIDENT, ZHANG_WEI),))
    b = patient("Zhang W.", birth=None, phone=None, address=None, ids=((RESIDENT, ZHANG_WEI),))
    m, verdict = match(a, b)
    assert (m.score, m.grade, verdict) == (1.0, "certain", "link")


def test_a_legacy_15_digit_id_equals_its_18_digit_form() -> None:
    legacy = "330521850312001"
    assert parse_resident_id(legacy).value == rid("33052119850312001")
    a = patient(ids=((RESIDENT, legacy),), phone=None, address=None)
    b = patient(ids=((RESIDENT, ZHANG_WEI),))
    m, verdict = match(a, b)
    assert (m.score, m.grade, verdict) == (1.0, "certain", "link")


def test_identical_twins_with_their_own_ids_never_link() -> None:
    a = patient(ids=((RESIDENT, ZHANG_WEI),))
    b = patient(ids=((RESIDENT, TWIN),))  # same name, birth date, address, phone
    m, verdict = match(a, b)
    assert (m.score, m.grade, verdict) == (0.0, "certainly-not", "none")


def test_same_name_and_birth_date_with_different_ids_is_no_match() -> None:
    other = rid("33052219850312005")
    a = patient(ids=((RESIDENT, ZHANG_WEI),))
    b = patient(ids=((RESIDENT, other),), phone="13900001111", address="德清县白沙镇新联村5号")
    assert match(a, b)[1] == "none"


def test_a_mistyped_id_is_a_hint_not_a_key() -> None:
    typo = ZHANG_WEI[:12] + ("7" if ZHANG_WEI[12] != "7" else "8") + ZHANG_WEI[13:]
    a = patient(ids=((RESIDENT, ZHANG_WEI),))
    b = patient(ids=((RESIDENT, typo),), address=None)  # name, birth, sex and phone agree
    assert b.keys == {} and b.invalid_ids == (typo,)
    m, verdict = match(a, b)
    assert m.score >= RULES.link and m.grade == "probable" and verdict == "link"
    assert "resident ID one typo apart" in m.reasons


def test_a_different_invalid_id_earns_nothing() -> None:
    far = "330521199901019999"
    a = patient(ids=((RESIDENT, ZHANG_WEI),))
    b = patient(ids=((RESIDENT, far),), address=None)
    m, _ = match(a, b)
    assert m.score < RULES.link


def test_a_foreigner_with_a_passport_written_two_ways() -> None:
    passport = (f"{SID}/passport/USA", "E12345678")
    a = patient("SMITH John", ids=(passport,), phone=None, address=None)
    b = patient("John Smith", ids=((f"{SID}/passport/USA", "e1234-5678"),), birth=None)
    m, verdict = match(a, b)
    assert (m.grade, verdict) == ("certain", "link")
    c = patient("John Smith", ids=((f"{SID}/passport/USA", "E87654321"),))
    m, verdict = match(a, c)
    assert (m.grade, verdict) == ("certainly-not", "none")


def test_passports_of_two_countries_do_not_veto() -> None:
    a = patient("John Smith", ids=((f"{SID}/passport/USA", "E12345678"),))
    b = patient("John Smith", ids=((f"{SID}/passport/GBR", "123456789"),))
    m, verdict = match(a, b)
    assert m.grade == "probable" and verdict == "link"


def test_a_shared_card_is_certain_but_a_new_card_is_no_veto() -> None:
    card = f"{SID}/insurance-card"
    a = patient(ids=((card, "H12345678"),))
    assert match(a, patient(ids=((card, "h1234-5678"),), phone=None))[0].grade == "certain"
    m, verdict = match(a, patient(ids=((card, "H99999999"),)))
    assert m.grade == "probable" and verdict == "link"


def test_a_resident_id_conflict_beats_a_shared_card() -> None:
    card = f"{SID}/ehealth-card"
    a = patient(ids=((RESIDENT, ZHANG_WEI), (card, "ABC123")))
    b = patient(ids=((RESIDENT, TWIN), (card, "ABC123")))
    assert match(a, b)[0].grade == "certainly-not"


# -- the weighted fields --------------------------------------------------------------------


def test_the_same_record_twice_without_keys_links() -> None:
    m, verdict = match(patient(), patient())
    assert m.score == pytest.approx(1.0) and m.grade == "probable" and verdict == "link"


def test_homophones_score_at_link_level() -> None:
    m, verdict = match(patient("张伟"), patient("章伟"))
    assert m.score == pytest.approx(0.955) and verdict == "link"
    assert "same pinyin" in m.reasons


def test_a_pinyin_written_name_meets_the_hanzi() -> None:
    m, verdict = match(patient("张伟"), patient("ZHANG Wei"))
    assert m.score == pytest.approx(0.955) and verdict == "link"
    m, _ = match(patient("张伟"), patient("Wei Zhang"))
    assert m.score == pytest.approx(0.955)


def test_missing_evidence_is_not_agreement() -> None:
    full, _ = match(patient(), patient())
    no_phone, verdict = match(patient(), patient(phone=None))
    assert no_phone.score < full.score
    assert no_phone.score == pytest.approx(0.80) and verdict == "review"
    assert "phone missing" in no_phone.reasons
    bare, verdict = match(patient(), patient(birth=None, phone=None, address=None))
    assert bare.score == pytest.approx(0.40) and verdict == "none"


def test_different_phones_and_names() -> None:
    m, verdict = match(patient(), patient("王芳", phone="13900001111"))
    assert m.score == pytest.approx(0.50) and verdict == "none"


def test_a_different_sex_halves_the_score() -> None:
    m, verdict = match(patient(), patient(gender="female"))
    assert m.score == pytest.approx(0.45) and verdict == "none"


def test_near_birth_dates_earn_half() -> None:
    one_digit, _ = match(patient(), patient(birth="1985-03-13"))
    swapped, _ = match(patient(birth="1985-03-12"), patient(birth="1985-12-03"))
    assert one_digit.score == swapped.score == pytest.approx(0.875)
    far, _ = match(patient(), patient(birth="1990-07-01"))
    assert far.score == pytest.approx(0.75)


def test_a_valid_id_contradicting_the_birth_date_lowers_sharply() -> None:
    a = patient(ids=((RESIDENT, ZHANG_WEI),))  # the ID says 1985-03-12
    b = patient(birth="1985-03-13")
    m, verdict = match(a, b)
    assert m.score == pytest.approx(0.4375) and verdict == "none"
    assert "birth date contradicts resident ID" in m.reasons


def test_a_valid_id_supplies_a_missing_birth_date_and_sex() -> None:
    a = patient(gender=None, birth=None, ids=((RESIDENT, ZHANG_WEI),))
    m, _ = match(a, patient())
    assert m.score == pytest.approx(1.0)


def test_twins_without_ids_and_different_given_names_are_at_most_a_review() -> None:
    m, verdict = match(patient("张明"), patient("张亮"))
    assert verdict != "link" and m.score < RULES.link


# -- infants --------------------------------------------------------------------------------


def test_newborn_twins_named_after_the_parent_do_not_link() -> None:
    son = patient("张三之子", birth="2026-10-01", phone="13812345678")
    daughter = patient("张三之女", gender="female", birth="2026-10-01", phone="13812345678")
    m, verdict = match(son, daughter)
    assert verdict == "none" and m.score < RULES.review


def test_the_same_newborn_twice_is_a_review_not_a_link() -> None:
    a = patient("张三之子", birth="2026-10-01")
    b = patient("张三之子", birth="2026-10-01")
    m, verdict = match(a, b)
    assert m.score == pytest.approx(1.0)
    assert (m.grade, verdict) == ("possible", "review")
    assert "infant without a shared key: review only" in m.reasons
    later = score(a, b, RULES, today=date(2028, 1, 1))
    assert decision(later, RULES) == "link"


def test_a_newborn_with_a_shared_key_links() -> None:
    baby = rid("33052120261001002")
    a = patient("张三之女", gender="female", birth="2026-10-01", ids=((RESIDENT, baby),))
    b = patient("张小花", gender="female", birth="2026-10-01", ids=((RESIDENT, baby),))
    assert match(a, b)[1] == "link"


# -- properties -----------------------------------------------------------------------------

NAMES = st.sampled_from(
    [None, "张伟", "章伟", "ZHANG Wei", "张明", "张三之子", "张三之女", "John Smith", "SMITH John"]
)
IDS = st.sampled_from(
    [
        (RESIDENT, ZHANG_WEI),
        (RESIDENT, TWIN),
        (RESIDENT, "330521850312001"),
        (RESIDENT, ZHANG_WEI[:-1] + ("0" if ZHANG_WEI[-1] != "0" else "1")),
        (f"{SID}/passport/USA", "E12345678"),
        (f"{SID}/passport/USA", "E87654321"),
        (f"{SID}/insurance-card", "H12345678"),
    ]
)
PATIENTS = st.builds(
    patient,
    NAMES,
    gender=st.sampled_from([None, "male", "female"]),
    birth=st.sampled_from([None, "1985-03-12", "1985-12-03", "1985-03-13", "2026-10-01"]),
    ids=st.lists(IDS, max_size=2).map(tuple),
    phone=st.sampled_from([None, "13812345678", "+86 139 0000 1111"]),
    address=st.sampled_from([None, ADDRESS, "德清县青山镇石桥村3组12号", "德清县白沙镇新联村5号"]),
)


@settings(max_examples=300, deadline=None)
@given(PATIENTS, PATIENTS)
def test_score_is_symmetric_and_bounded(a: Features, b: Features) -> None:
    ab, ba = score(a, b, RULES, today=TODAY), score(b, a, RULES, today=TODAY)
    assert ab == ba
    assert 0.0 <= ab.score <= 1.0
    assert ab.grade in ("certain", "probable", "possible", "certainly-not")
    assert decision(ab, RULES) in ("link", "review", "none")


@settings(max_examples=100, deadline=None)
@given(PATIENTS)
def test_a_record_with_a_valid_key_is_certainly_itself(a: Features) -> None:
    m = score(a, a, RULES, today=TODAY)
    assert m.grade == "certain" if a.keys else m.grade != "certain"


# -- the rules file -------------------------------------------------------------------------


def test_the_rules_file() -> None:
    assert load_rules() is load_rules(default_rules_path())
    assert (RULES.link, RULES.review) == (0.90, 0.70)
    assert RULES.auto_link_min_age_days == 365 and RULES.max_candidates == 200
    assert {k.kind for k in RULES.keys} == {
        "resident-id",
        "ehealth-card",
        "insurance-card",
        "passport",
    }


def _rules_data() -> dict[str, Any]:
    return json.loads(default_rules_path().read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["thresholds"].update(review=0.95), "review <= link"),
        (lambda d: d["fields"].update(name=0.5), "sum to"),
        (lambda d: d["fields"].pop("phone"), "fields must give"),
        (lambda d: d["keys"][0].update(kind="mrn"), "kind"),
        (lambda d: d["keys"][3].update(system="x"), "exactly one of"),
        (lambda d: d["keys"][1].update(check="gb11643"), "does not apply"),
        (lambda d: d.update(maxCandidates=0), "maxCandidates"),
    ],
)
def test_bad_rules_are_refused(change: Any, message: str) -> None:
    data = _rules_data()
    change(data)
    with pytest.raises(ValueError, match=message):
        parse_rules(data)


def test_load_rules_reads_another_file(tmp_path: Path) -> None:
    data = _rules_data()
    data["thresholds"] = {"link": 0.95, "review": 0.80}
    path = tmp_path / "matching.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_rules(path).link == 0.95
    assert load_rules(path) is load_rules(path)  # read once per path
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_rules(broken)


# -- a synthetic population -----------------------------------------------------------------


def test_precision_on_a_synthetic_population() -> None:
    from itertools import combinations

    from tests.bench.identity_data import population

    members = ["XRMYY", "XZYY", "XFYBJY", "QSWSY", "BSWSY", "HXWSY", "CDSQ", "CXSQ"]
    records = [(key, features(res, RULES)) for key, res in population(2000, members, seed=11)]
    blocks: dict[Any, list[int]] = {}
    for i, (_, f) in enumerate(records):
        for block in (f.name_key, (f.birth_date, f.gender), *f.phones, *f.keys.items()):
            if block and block != (None, None):
                blocks.setdefault(block, []).append(i)
    pairs = {pair for members_ in blocks.values() for pair in combinations(members_, 2)}
    linked = [
        records[a][0] == records[b][0]
        for a, b in pairs
        if match(records[a][1], records[b][1])[1] == "link"
    ]
    true_pairs = sum(1 for a, b in pairs if records[a][0] == records[b][0])
    assert sum(linked) / len(linked) >= 0.99  # precision
    assert sum(linked) / true_pairs >= 0.75  # recall of automatic links within the blocks
