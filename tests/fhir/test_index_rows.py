"""The search-index rows a resource gives (hub.search.extract), as tuples in table order."""

from __future__ import annotations

from typing import Any

from hub.search.extract import COLUMNS, extract_index_rows
from hub.search.values import date_range
from hub.store.schema import INDEX_TABLES


def _rows(resource: dict[str, Any], kind: str, param: str) -> list[dict[str, Any]]:
    return [
        dict(zip(COLUMNS[kind], row, strict=True))
        for row in extract_index_rows(resource)[kind]
        if row[0] == param
    ]


def test_row_columns_follow_the_index_tables() -> None:
    # The store prefixes (rid, res_type) and copies each row as it is.
    assert set(COLUMNS) == set(INDEX_TABLES)
    for kind, table in INDEX_TABLES.items():
        assert COLUMNS[kind] == tuple(c.name for c in table.columns)[2:], kind


def test_a_parameter_with_two_paths_gives_a_value_found_on_both_once() -> None:
    org = {"resourceType": "Organization", "name": "县人民医院", "alias": ["县人民医院", "县医院"]}
    assert sorted(r["exact"] for r in _rows(org, "string", "name")) == ["县人民医院", "县医院"]


def test_choice_paths_are_found_whichever_type_is_chosen() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "glucose"},
        "effectivePeriod": {
            "start": "2026-11-01T08:00:00+08:00",
            "end": "2026-11-01T09:00:00+08:00",
        },
        "valueDateTime": "2026-10-30",
    }
    (effective,) = _rows(obs, "date", "date")
    assert effective["lo"] == date_range("2026-11-01T08:00:00+08:00")[0]
    assert effective["hi"] == date_range("2026-11-01T09:00:00+08:00")[1]
    assert [(r["lo"], r["hi"]) for r in _rows(obs, "date", "value-date")] == [
        date_range("2026-10-30")
    ]


def test_an_extension_path_takes_only_its_own_extension() -> None:
    url = "https://ygt.example.org/fhir/StructureDefinition/feedback-addressee"
    composition = {
        "resourceType": "Composition",
        "extension": [
            {"url": "https://example.org/other", "valueReference": {"reference": "Organization/x"}},
            {"url": url, "valueReference": {"reference": "Organization/CDSQ"}},
        ],
    }
    assert [
        (r["target_type"], r["target_id"]) for r in _rows(composition, "reference", "addressee")
    ] == [("Organization", "CDSQ")]


def test_a_logical_reference_is_a_token_of_the_parameter_with_identifier() -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "subject": {"identifier": {"system": "urn:mrn", "value": "M1"}, "type": "Patient"},
    }
    assert _rows(report, "reference", "subject") == []
    assert _rows(report, "token", "subject:identifier") == [
        {"param": "subject:identifier", "system": "urn:mrn", "code": "M1", "text": None}
    ]


def test_an_id_only_reference_takes_its_type_from_the_element_not_from_an_earlier_one() -> None:
    # Split references are remembered by their text: a typed one must not be served from it.
    plain = {"resourceType": "DiagnosticReport", "subject": {"reference": "p1"}}
    typed = {"resourceType": "DiagnosticReport", "subject": {"reference": "p1", "type": "Group"}}
    assert _rows(plain, "reference", "subject")[0]["target_type"] is None
    assert _rows(typed, "reference", "subject")[0]["target_type"] == "Group"
    assert _rows(plain, "reference", "subject")[0]["target_type"] is None


def test_a_concept_text_is_the_tokens_text_else_each_codings_display() -> None:
    concept = {
        "coding": [
            {"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"},
            {"system": "urn:local", "code": "GLU", "display": "血糖"},
        ]
    }
    obs = {"resourceType": "Observation", "code": concept}
    assert [r["text"] for r in _rows(obs, "token", "code")] == ["glucose", "血糖"]
    obs["code"] = {**concept, "text": "Blood  Glucose"}
    assert [r["text"] for r in _rows(obs, "token", "code")] == ["blood glucose"] * 2
