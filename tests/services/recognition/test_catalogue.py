"""The recognition catalogue and quality certifications read from profiles/recognition/."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hub.fhir.validation import validate_resource
from hub.services.recognition.catalogue import (
    Catalogue,
    Certification,
    Item,
    is_loinc_code,
    load_catalogue,
)

REPO = Path(__file__).resolve().parents[3]
PROFILES = REPO / "profiles"
CBC, LIPIDS, FASTING_GLUCOSE, URINALYSIS, ECG = "58410-2", "57698-3", "1558-6", "24356-8", "11524-6"


def _members() -> list[dict[str, Any]]:
    data = json.loads((PROFILES / "community" / "community.json").read_text(encoding="utf-8"))
    return data["members"]


def _primary_care() -> list[str]:
    kinds = ("township-centre", "community-centre")
    return [m["code"] for m in _members() if m["kind"] in kinds]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def test_items_of_every_kind(catalogue: Catalogue) -> None:
    assert len(catalogue.items) >= 40
    kinds = {item.kind for item in catalogue.items}
    assert {"lab", "imaging"} <= kinds <= {"lab", "imaging", "ecg"}
    assert len(catalogue.of_kind("lab")) >= 20
    assert len(catalogue.of_kind("imaging")) >= 15
    assert len({item.code for item in catalogue.items}) == len(catalogue.items)


def test_known_items(catalogue: Catalogue) -> None:
    cbc = catalogue.item(CBC)
    assert cbc is not None
    assert (cbc.display, cbc.kind, cbc.loinc, cbc.specimen) == ("血常规", "lab", True, "全血")
    assert cbc.validity_days == 7
    assert cbc.price_yuan == Decimal("20")
    lipids = catalogue.item(LIPIDS)
    assert lipids is not None and lipids.display == "血脂四项"
    ecg = catalogue.item(ECG)
    assert ecg is not None and (ecg.kind, ecg.specimen) == ("ecg", "none")
    assert catalogue.item("YGT-L002") is not None and not catalogue.item("YGT-L002").loinc
    assert catalogue.item("no-such-code") is None
    assert catalogue.item("58410-2 ") is None  # case- and space-sensitive codes


def test_every_item_is_complete(catalogue: Catalogue) -> None:
    for item in catalogue.items:
        assert item.validity_days > 0, item
        assert isinstance(item.price_yuan, Decimal) and item.price_yuan > 0, item
        assert item.display and item.display_en, item
        assert (item.specimen == "none") == (item.kind != "lab"), item
        assert item.loinc == is_loinc_code(item.code), item
        assert item.loinc or item.code.startswith("YGT-"), item


def test_validity_follows_the_guidance(catalogue: Catalogue) -> None:
    days = {item.code: item.validity_days for item in catalogue.items}
    assert days[CBC] == days[URINALYSIS] == 7
    assert days["24325-3"] == 14  # 肝功能
    assert days["4548-4"] == 90  # 糖化血红蛋白
    assert days["882-1"] >= 3650  # 血型
    assert days[ECG] == 7
    assert all(item.validity_days == 30 for item in catalogue.items if "超声" in item.display)


def test_lab_centre_and_lead_hospital_certified_for_all_lab(catalogue: Catalogue) -> None:
    labs = catalogue.of_kind("lab")
    for member in ("XJYZX", "XRMYY"):
        for item in labs:
            assert catalogue.certified(member, item.code, date(2026, 1, 1))
            assert catalogue.certified(member, item.code, date(2026, 6, 1))
            assert catalogue.certified(member, item.code, date(2027, 12, 31))
            assert not catalogue.certified(member, item.code, date(2028, 1, 1))
            assert not catalogue.certified(member, item.code, date(2025, 12, 31))
    assert not catalogue.certified("XJYZX", "29252-4", date(2026, 6, 1))  # no imaging


def test_imaging_and_ecg_certifications(catalogue: Catalogue) -> None:
    on = date(2026, 6, 1)
    for item in catalogue.of_kind("imaging"):
        assert catalogue.certified("XYXZX", item.code, on)
        assert catalogue.certified("XRMYY", item.code, on)
    for item in catalogue.of_kind("ecg"):
        assert catalogue.certified("XRMYY", item.code, on)
        assert not catalogue.certified("XYXZX", item.code, on)
    assert not catalogue.certified("XYXZX", CBC, on)


def test_primary_care_certified_for_three_items(catalogue: Catalogue) -> None:
    centres = _primary_care()
    assert "QSWSY" in centres and "CDSQ" in centres
    for member in centres:
        for code in (CBC, URINALYSIS, FASTING_GLUCOSE):
            assert catalogue.certified(member, code, date(2026, 6, 1)), (member, code)
            assert not catalogue.certified(member, code, date(2028, 1, 1)), (member, code)
        assert not catalogue.certified(member, LIPIDS, date(2026, 6, 1))
        assert not catalogue.certified(member, "29252-4", date(2026, 6, 1))
    assert not catalogue.certified("XZYY", CBC, date(2026, 6, 1))  # no certification at all
    assert not catalogue.certified("NOBODY", CBC, date(2026, 6, 1))


def test_certifications_name_known_members(catalogue: Catalogue) -> None:
    codes = {m["code"] for m in _members()}
    assert {cert.member for cert in catalogue.certifications} <= codes
    assert all(cert.codes for cert in catalogue.certifications)


def test_catalogue_is_a_valid_code_system() -> None:
    data = json.loads((PROFILES / "recognition" / "catalogue.json").read_text(encoding="utf-8"))
    assert validate_resource(data) is data
    assert data["url"] == "https://ygt.example.org/fhir/CodeSystem/recognition-catalogue"
    assert (data["status"], data["content"], data["caseSensitive"]) == ("active", "complete", True)
    assert data["count"] == len(data["concept"])
    assert {p["code"] for p in data["property"]} == {
        "kind",
        "loinc",
        "validityDays",
        "priceYuan",
        "specimen",
    }


def test_imaging_centre_map_targets_are_catalogue_items(catalogue: Catalogue) -> None:
    path = PROFILES / "community" / "concept-maps" / "XYXZX-imaging.json"
    cmap = json.loads(path.read_text(encoding="utf-8"))
    targets = {t["code"] for e in cmap["group"][0]["element"] for t in e["target"]}
    assert targets and all(code in catalogue for code in targets)


def test_loaded_once_per_directory(tmp_path: Path) -> None:
    assert load_catalogue() is load_catalogue()
    assert load_catalogue(PROFILES) is load_catalogue()
    profiles = _copy_profiles(tmp_path)
    assert load_catalogue(profiles) is not load_catalogue()
    assert len(load_catalogue(profiles).items) == len(load_catalogue().items)


def test_catalogue_without_files_checks_duplicates() -> None:
    item = Item("58410-2", "血常规", "lab", True, 7, Decimal(20), "全血")
    with pytest.raises(ValueError, match="duplicate"):
        Catalogue([item, item])
    cert = Certification("QSWSY", frozenset({"58410-2"}), date(2026, 1, 1), date(2026, 1, 31))
    catalogue = Catalogue([item], [cert])
    assert catalogue.certified("QSWSY", "58410-2", date(2026, 1, 31))
    assert not catalogue.certified("QSWSY", "58410-2", date(2026, 2, 1))


# ---- bad files ---------------------------------------------------------------------------


def _copy_profiles(tmp_path: Path) -> Path:
    profiles = tmp_path / "profiles"
    for sub in ("recognition", "community"):
        (profiles / sub).mkdir(parents=True)
    for name in ("catalogue.json", "certifications.json"):
        shutil.copy(PROFILES / "recognition" / name, profiles / "recognition" / name)
    shutil.copy(PROFILES / "community" / "community.json", profiles / "community")
    return profiles


def _edit(profiles: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = profiles / "recognition" / name
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _concept(data: dict[str, Any], code: str) -> dict[str, Any]:
    return next(c for c in data["concept"] if c["code"] == code)


def _duplicate(data: dict[str, Any]) -> None:
    data["concept"].append(dict(_concept(data, CBC)))
    data["count"] += 1


def _unknown_kind(data: dict[str, Any]) -> None:
    _concept(data, CBC)["property"][0] = {"code": "kind", "valueCode": "pathology"}


def _missing_validity(data: dict[str, Any]) -> None:
    concept = _concept(data, LIPIDS)
    concept["property"] = [p for p in concept["property"] if p["code"] != "validityDays"]


def _undeclared_price(data: dict[str, Any]) -> None:
    data["property"] = [p for p in data["property"] if p["code"] != "priceYuan"]


def _zero_price(data: dict[str, Any]) -> None:
    for prop in _concept(data, CBC)["property"]:
        if prop["code"] == "priceYuan":
            prop["valueDecimal"] = 0


def _bad_check_digit(data: dict[str, Any]) -> None:
    _concept(data, CBC)["code"] = "58410-3"


def _community_code_marked_loinc(data: dict[str, Any]) -> None:
    for prop in _concept(data, "YGT-L002")["property"]:
        if prop["code"] == "loinc":
            prop["valueBoolean"] = True


def _imaging_with_specimen(data: dict[str, Any]) -> None:
    for prop in _concept(data, "29252-4")["property"]:
        if prop["code"] == "specimen":
            prop["valueString"] = "血清"


def _wrong_count(data: dict[str, Any]) -> None:
    data["count"] = 3


def _certification(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["certifications"][0].update(changes)

    return change


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("catalogue.json", _duplicate, "duplicate code '58410-2'"),
        ("catalogue.json", _unknown_kind, "kind 'pathology' is not one of"),
        ("catalogue.json", _missing_validity, "missing property validityDays"),
        ("catalogue.json", _undeclared_price, "does not declare 'priceYuan'"),
        ("catalogue.json", _zero_price, "priceYuan must be > 0"),
        ("catalogue.json", _bad_check_digit, "not a valid LOINC code"),
        ("catalogue.json", _community_code_marked_loinc, "not a valid LOINC code"),
        ("catalogue.json", _imaging_with_specimen, "specimen 'none'"),
        ("catalogue.json", _wrong_count, "count is 3"),
        ("certifications.json", _certification(items=["58410-2", "99999-9"]), "'99999-9'"),
        ("certifications.json", _certification(items="all-pathology"), "'all-pathology'"),
        ("certifications.json", _certification(member="NOSUCH"), "member 'NOSUCH'"),
        ("certifications.json", _certification(member="xjyzx"), "member 'xjyzx'"),
        ("certifications.json", _certification(**{"from": "2028-01-01"}), "is after to"),
        ("certifications.json", _certification(to="2027-02-30"), "is not a date"),
        ("certifications.json", _certification(items=[]), "items must be"),
    ],
)
def test_bad_files_raise(
    tmp_path: Path, name: str, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    profiles = _copy_profiles(tmp_path)
    _edit(profiles, name, change)
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        load_catalogue(profiles)
    assert name in str(caught.value)  # the message names the file


def test_not_json_and_missing_files(tmp_path: Path) -> None:
    profiles = _copy_profiles(tmp_path)
    (profiles / "recognition" / "catalogue.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_catalogue(profiles)
    profiles = _copy_profiles(tmp_path / "second")
    (profiles / "recognition" / "certifications.json").unlink()
    with pytest.raises(ValueError, match="file not found"):
        load_catalogue(profiles)


# ---- in the store ------------------------------------------------------------------------


def test_served_after_bootstrap_without_new_versions(engine: sa.Engine, client: TestClient) -> None:
    from adapters.feeds.config import demo_community
    from hub.feeds.bootstrap import load_community_resources

    load_community_resources(engine, demo_community())
    assert load_community_resources(engine, demo_community()) == 0
    served = client.get("/fhir/CodeSystem/recognition-catalogue").json()
    assert served["url"] == "https://ygt.example.org/fhir/CodeSystem/recognition-catalogue"
    assert len(served["concept"]) == len(load_catalogue().items)
    history = client.get("/fhir/CodeSystem/recognition-catalogue/_history").json()
    assert len(history["entry"]) == 1
