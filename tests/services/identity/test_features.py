"""Features read from a FHIR Patient: only valid identifiers become keys."""

from __future__ import annotations

from typing import Any

from hub.services.identity.features import INVALID_IDENTIFIER, Features, features, phone_digits
from hub.services.identity.rules import load_rules

RULES = load_rules()
SID = "https://ygt.example.org/fhir/sid"
VALID = "11010519491231002X"  # the example printed in GB 11643
LEGACY = "110105491231002"  # the same number in its 15-digit form


def test_resident_id_is_checked_and_read() -> None:
    feats = features({"identifier": [{"system": f"{SID}/resident-id", "value": VALID}]}, RULES)
    assert feats.keys == {"resident-id": VALID}
    assert feats.id_birth_date == "1949-12-31" and feats.id_gender == "female"
    assert feats.invalid_ids == ()


def test_legacy_15_digits_become_the_18_digit_key() -> None:
    feats = features({"identifier": [{"system": f"{SID}/resident-id", "value": LEGACY}]}, RULES)
    assert feats.keys == {"resident-id": VALID}


def test_an_invalid_resident_id_is_no_key() -> None:
    typo = VALID[:5] + "6" + VALID[6:]
    feats = features({"identifier": [{"system": f"{SID}/resident-id", "value": typo}]}, RULES)
    assert feats.keys == {}
    assert feats.invalid_ids == (typo,)
    assert feats.id_birth_date is None and feats.id_gender is None


def test_a_flagged_identifier_is_no_key_even_if_it_checks() -> None:
    ident = {
        "system": f"{SID}/resident-id",
        "value": VALID,
        "extension": [{"url": INVALID_IDENTIFIER, "valueCode": "region"}],
    }
    feats = features({"identifier": [ident]}, RULES)
    assert feats.keys == {} and feats.invalid_ids == (VALID,)


def test_cards_and_passports_are_normalised() -> None:
    patient = {
        "identifier": [
            {"system": f"{SID}/ehealth-card", "value": "ab12-cd34 ef"},
            {"system": f"{SID}/insurance-card", "value": " h1234 5678 "},
            {"system": f"{SID}/passport/usa", "value": "E1234-5678"},
            {"system": f"{SID}/XRMYY/mrn", "value": "ZY0099123"},  # an MRN is no key
        ]
    }
    assert features(patient, RULES).keys == {
        "ehealth-card": "AB12CD34EF",
        "insurance-card": "H12345678",
        "passport": "USA:E12345678",
    }


def test_a_passport_system_without_a_country_is_ignored() -> None:
    ident = {"system": f"{SID}/passport/", "value": "E12345678"}
    assert features({"identifier": [ident]}, RULES).keys == {}


def test_official_hanzi_name() -> None:
    patient: dict[str, Any] = {
        "name": [
            {"use": "usual", "text": "Zhang Wei"},
            {"use": "official", "family": "章", "given": ["伟"]},
        ]
    }
    feats = features(patient, RULES)
    assert feats.name == "章伟"
    assert feats.pinyin == {"zhangwei"} and feats.name_key == "weizhang"


def test_latin_name_family_then_given() -> None:
    feats = features({"name": [{"family": "SMITH", "given": ["John", "Paul"]}]}, RULES)
    assert feats.name == "SMITH John Paul"
    assert "johnpaulsmith" in feats.pinyin and "smithjohnpaul" in feats.pinyin


def test_name_from_text_only() -> None:
    assert features({"name": [{"text": " 欧阳 娜娜 "}]}, RULES).name == "欧阳娜娜"
    assert features({"name": [{}]}, RULES).name is None


def test_birth_date_only_when_full() -> None:
    assert features({"birthDate": "1985-03-12"}, RULES).birth_date == "1985-03-12"
    assert features({"birthDate": "1985-03"}, RULES).birth_date is None
    assert features({"birthDate": "1985"}, RULES).birth_date is None
    assert features({"birthDate": "1985-02-30"}, RULES).birth_date is None


def test_gender() -> None:
    assert features({"gender": "female"}, RULES).gender == "female"
    assert features({"gender": "unknown"}, RULES).gender is None


def test_phones() -> None:
    telecom = [
        {"system": "phone", "value": "+86 138-1234-5678"},
        {"system": "phone", "value": "0086 13912345678"},
        {"system": "phone", "value": "8613712345678"},
        {"system": "phone", "value": "0572-8012345"},
        {"system": "email", "value": "a@example.org"},
    ]
    assert features({"telecom": telecom}, RULES).phones == {
        "13812345678",
        "13912345678",
        "13712345678",
        "05728012345",
    }
    assert phone_digits("+86 572 8012345") == "05728012345"
    assert phone_digits("123") is None


def test_address_text_or_parts_and_division() -> None:
    text = {"text": "浙江省湖州市德清县青山镇石桥村3组12号"}
    assert features({"address": [text]}, RULES).address == text["text"]
    parts = {
        "state": "浙江省",
        "city": "湖州市",
        "district": "330521",
        "line": ["青山镇石桥村3组12号"],
    }
    feats = features({"address": [parts]}, RULES)
    assert feats.address == "浙江省湖州市青山镇石桥村3组12号"
    assert feats.division == "330521"
    ext = {
        "text": "德清县青山镇",
        "extension": [
            {
                "url": "https://ygt.example.org/fhir/StructureDefinition/division-code",
                "valueCode": "330521101000",
            }
        ],
    }
    assert features({"address": [ext]}, RULES).division == "330521"


def test_an_empty_patient_has_no_features() -> None:
    feats = features({"resourceType": "Patient"}, RULES)
    assert feats.keys == {} and feats.name is None and feats.pinyin == frozenset()
    assert feats.phones == frozenset() and feats.address is None and feats.birth_date is None


def test_stored_features_text_does_not_change() -> None:
    """Stored records' digests are hashes of this text: a change would rewrite every master."""
    from hub.services.identity.index_store import features_json

    feats = Features(
        keys={"resident-id": "110101196003020011", "mrn": "XRMYY|M1"},
        invalid_ids=("bad",),
        name="张三",
        pinyin=frozenset({"zhang san", "zhangsan"}),
        name_key="zhangsan",
        gender="male",
        birth_date="1960-03-02",
        phones=frozenset({"13900000002", "13900000001"}),
        division="330100",
    )
    assert features_json(feats) == (
        '{"address":null,"birth_date":"1960-03-02","division":"330100","gender":"male",'
        '"id_birth_date":null,"id_gender":null,"invalid_ids":["bad"],'
        '"keys":{"mrn":"XRMYY|M1","resident-id":"110101196003020011"},"name":"张三",'
        '"name_key":"zhangsan","phones":["13900000001","13900000002"],'
        '"pinyin":["zhang san","zhangsan"]}'
    )
