"""Criteria parsing and in-memory matching, per parameter type, and against the search engine."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.fhir import interactions
from hub.fhir.interactions import Unit
from hub.search.definitions import EXTENSION_URLS, get_param
from hub.search.engine import find_matches
from hub.search.extract import extract_index_rows
from hub.services.subscriptions.criteria import (
    CriteriaError,
    parse_criteria,
    rows_by_param,
)
from hub.store.schema import resources


def matches(criteria: str, resource: dict[str, Any], res_id: str = "c1") -> bool:
    rows = rows_by_param(extract_index_rows(resource))
    return parse_criteria(criteria).matches(res_id, rows)


PROFILE = "https://ygt.example.org/fhir/StructureDefinition/feedback-composition"
COMPOSITION: dict[str, Any] = {
    "resourceType": "Composition",
    "meta": {
        "tag": [{"system": "https://ygt.example.org/fhir/CodeSystem/feedback", "code": "monthly"}],
        "profile": [PROFILE],
    },
    "status": "final",
    "type": {
        "coding": [
            {"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}
        ]
    },
    "subject": {"reference": "Patient/p1"},
    "encounter": {"reference": "http://his.example.org/fhir/Encounter/e9"},
    "date": "2026-11-01T10:30:00+08:00",
    "author": [{"reference": "Organization/XRMYY"}],
    "title": "Résumé de Sortie 出院小结",
    "event": [{"period": {"start": "2026-10-03", "end": "2026-10-12"}}],
}


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("Composition?type=http://loinc.org|18842-5", True),
        ("Composition?type=18842-5", True),
        ("Composition?type=http://loinc.org|", True),
        ("Composition?type=|18842-5", False),  # the coding has a system
        ("Composition?type=http://snomed.info/sct|18842-5", False),
        ("Composition?type=11488-4,18842-5", True),  # values OR
        ("Composition?type:not=11488-4", True),
        ("Composition?type:not=18842-5", False),
        ("Composition?type:text=discharge", True),
        ("Composition?status=final", True),
        ("Composition?status=preliminary", False),
    ],
)
def test_token(criteria: str, expected: bool) -> None:
    assert matches(criteria, COMPOSITION) is expected


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("Composition?subject=Patient/p1", True),
        ("Composition?subject=p1", True),
        ("Composition?subject:Patient=p1", True),
        ("Composition?subject:Group=p1", False),
        ("Composition?subject=Patient/p2", False),
        ("Composition?patient=Patient/p1", True),
        ("Composition?subject=http://hub.example.org/fhir/Patient/p1", True),
        ("Composition?encounter=http://his.example.org/fhir/Encounter/e9", True),
        ("Composition?encounter=Encounter/e9", True),
        ("Composition?encounter=Encounter/e8", False),
        ("Composition?author=Organization/XRMYY", True),
    ],
)
def test_reference(criteria: str, expected: bool) -> None:
    assert matches(criteria, COMPOSITION) is expected


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("Composition?title=resume", True),  # prefix, case- and accent-insensitive
        ("Composition?title=RÉSUMÉ%20DE", True),
        ("Composition?title=sortie", False),  # not a prefix
        ("Composition?title:contains=sortie", True),
        ("Composition?title:contains=出院", True),
        ("Composition?title:exact=Résumé de Sortie 出院小结", True),
        ("Composition?title:exact=résumé de sortie 出院小结", False),
    ],
)
def test_string(criteria: str, expected: bool) -> None:
    assert matches(criteria, COMPOSITION) is expected


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("Composition?date=2026-11-01", True),  # the minute lies within the day
        ("Composition?date=2026-11", True),
        ("Composition?date=2026-11-02", False),
        ("Composition?date=ge2026-11-01", True),
        ("Composition?date=gt2026-11-01", False),  # gt: ends after the day's end
        ("Composition?date=lt2026-11-01T10:30:00%2B08:00", False),
        ("Composition?date=le2026-11-01T10:30:00%2B08:00", True),
        ("Composition?date=lt2026-11-02", True),
        ("Composition?date=ne2026-11-01", False),
        ("Composition?date=eb2026-12-01", True),
        ("Composition?date=sa2026-10-31", True),
        ("Composition?date=2026-11-01T02:30:00Z", True),  # the same second, in UTC
        ("Composition?date=2026-11-01T02:30:01Z", False),
        ("Composition?date=2026-11-01T02:30Z", True),
        ("Composition?period=ge2026-10-10&period=le2026-10-05", True),  # the stay spans both
        ("Composition?period=2026-10", True),
        ("Composition?period=2026-10-05", False),  # eq: the stay is wider than the day
    ],
)
def test_date(criteria: str, expected: bool) -> None:
    assert matches(criteria, COMPOSITION) is expected


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (f"Composition?_profile={PROFILE}", True),
        ("Composition?_profile=https://ygt.example.org/fhir/StructureDefinition", False),
        ("Composition?_profile:below=https://ygt.example.org/fhir/", True),
        (f"Composition?_profile:above={PROFILE}/v2", True),
    ],
)
def test_uri(criteria: str, expected: bool) -> None:
    assert matches(criteria, COMPOSITION) is expected


def test_id_tag_missing_and_combinations() -> None:
    assert matches("Composition?_id=c1", COMPOSITION, "c1")
    assert matches("Composition?_id=c0,c1", COMPOSITION, "c1")
    assert not matches("Composition?_id=c2", COMPOSITION, "c1")
    assert matches("Composition?_id:not=c2", COMPOSITION, "c1")
    assert matches(
        "Composition?_tag=https://ygt.example.org/fhir/CodeSystem/feedback|monthly", COMPOSITION
    )
    assert not matches("Composition?_tag=monthly-amended", COMPOSITION)
    assert matches("Composition?confidentiality:missing=true", COMPOSITION)
    assert not matches("Composition?subject:missing=true", COMPOSITION)
    assert matches("Composition?subject:missing=false", COMPOSITION)
    # Repeated parameters AND; an empty query matches every write of the type.
    assert matches("Composition?type=18842-5&subject=Patient/p1&status=final", COMPOSITION)
    assert not matches("Composition?type=18842-5&subject=Patient/p2", COMPOSITION)
    assert matches("Composition?", COMPOSITION)


def test_a_community_parameter_through_an_extension() -> None:
    # Composition ``addressee`` (whose primary-care centre a feedback document is for) is
    # defined by the hub's own table; the matcher knows it only from there.
    param = get_param("Composition", "addressee")
    assert param is not None
    alias = param.paths[0].split(".")[0].removeprefix("extension:")
    document = {
        **COMPOSITION,
        "extension": [
            {"url": EXTENSION_URLS[alias], "valueReference": {"reference": "Organization/QSWSY"}}
        ],
    }
    feedback = "Composition?type=http://loinc.org|18842-5&addressee=Organization/QSWSY"
    assert matches(feedback, document)
    assert not matches(feedback.replace("QSWSY", "BSWSY"), document)
    assert not matches(feedback, COMPOSITION)


@pytest.mark.parametrize(
    ("criteria", "says"),
    [
        ("", "empty"),
        ("Composition", "no '?'"),
        ("Compositionx?type=1", "not served"),
        ("http://hub/fhir/Composition?type=1", "resource type"),
        ("Composition?nonsense=1", "'nonsense' is not a search parameter"),
        ("Composition?_count=10", "'_count' is not a search parameter"),
        ("Composition?type=", "empty value"),
        ("Composition?subject.name=Li", "chained"),
        ("Composition?_has:List:item:code=x", "chained"),
        ("Observation?value-quantity=5", "cannot be used"),
        ("Observation?code-value-quantity=x$5", "cannot be used"),
        ("Composition?_lastUpdated=ge2026", "cannot be used"),
        ("Composition?date=ap2026-11-01", "'ap'"),
        ("Composition?date=2026-13-01", "not a valid date"),
        ("Composition?title:below=x", "modifier :below"),
        ("Composition?subject:identifier=sys|1", "modifier :identifier"),
        ("Composition?patient=Patient/mpi-7", "master Patient"),
        ("Composition?status:missing=maybe", "true or false"),
    ],
)
def test_refused_when_parsed(criteria: str, says: str) -> None:
    with pytest.raises(CriteriaError, match=says.replace("?", r"\?").replace("$", r"\$")):
        parse_criteria(criteria)


# --- the matcher agrees with the search engine on stored resources ---------------------------

SUBJECTS = ["Patient/p1", "Patient/p2", "Group/p1", "http://other.example.org/fhir/Patient/p1"]
LOINC = "http://loinc.org"
CODES = [("http://loinc.org", "718-7"), ("http://loinc.org", "2345-7"), (None, "718-7")]
DATES = [
    {"effectiveDateTime": "2026-10-03"},
    {"effectiveDateTime": "2026-10-03T08:30:00+08:00"},
    {"effectiveDateTime": "2026-10"},
    {"effectivePeriod": {"start": "2026-10-01", "end": "2026-10-05"}},
    {"effectivePeriod": {"start": "2026-10-04"}},
    {},
]
VALUES = ["Négatif", "negative", "阴性", "Neg+"]


def observations() -> list[dict[str, Any]]:
    out = []
    for i in range(24):
        system, code = CODES[i % len(CODES)]
        coding = {"code": code} if system is None else {"system": system, "code": code}
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final" if i % 4 else "amended",
            "code": {"coding": [coding]},
            "subject": {"reference": SUBJECTS[i % len(SUBJECTS)]},
            "valueString": VALUES[i % len(VALUES)],
            **DATES[i % len(DATES)],
        }
        if i % 3 == 0:  # combo-code is code | component.code: stored as those two
            component_code = "8480-6" if i % 2 else "2345-7"
            obs["component"] = [{"code": {"coding": [{"system": LOINC, "code": component_code}]}}]
        out.append(obs)
    return out


@pytest.fixture
def stored(engine: sa.Engine, clean_db: None) -> list[tuple[str, dict[str, Any]]]:
    with engine.begin() as conn:
        unit = Unit.on(conn)
        for obs in observations():
            interactions.create(unit, "Observation", obs)
        unit.writer.flush()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(resources.c.res_id, resources.c.content).where(
                resources.c.res_type == "Observation"
            )
        ).all()
    return [(r.res_id, orjson.loads(r.content)) for r in rows]


_day = st.sampled_from(["2026-10-01", "2026-10-03", "2026-10-04", "2026-10-05", "2026-10-31"])
_date_value = st.one_of(
    _day,
    st.sampled_from(["2026-10", "2026", "2026-10-03T08:30", "2026-10-03T00:30:00Z"]),
)
_clause = st.one_of(
    st.builds(
        lambda p, d: f"date={p}{d}",
        st.sampled_from(["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]),
        _date_value,
    ),
    st.sampled_from(
        [
            "code=718-7",
            "code=http://loinc.org|718-7",
            "code=|718-7",
            "code=http://loinc.org|",
            "code=2345-7,718-7",
            "code:not=2345-7",
            "status=final",
            "status=amended,final",
            "subject=Patient/p1",
            "subject=p1",
            "subject:Group=p1",
            "subject=http://other.example.org/fhir/Patient/p1",
            "patient=Patient/p2",
            "value-string=neg",
            "value-string=NEGATIF",
            "value-string:exact=negative",
            "value-string:contains=+",
            "value-string=阴",
            "subject:missing=false",
            "value-concept:missing=true",
            "combo-code=2345-7",
            "combo-code=http://loinc.org|8480-6",
            "combo-code=718-7,8480-6",
            "combo-code:not=2345-7",
            "combo-code:missing=false",
            "component-code=8480-6",
            "combo-value-concept:missing=true",
        ]
    ),
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(clauses=st.lists(_clause, min_size=1, max_size=3))
def test_same_answers_as_the_search_engine(
    engine: sa.Engine, stored: list[tuple[str, dict[str, Any]]], clauses: list[str]
) -> None:
    text = "Observation?" + "&".join(c.replace("+", "%2B") for c in clauses)
    criteria = parse_criteria(text)
    in_memory = {
        res_id
        for res_id, resource in stored
        if criteria.matches(res_id, rows_by_param(extract_index_rows(resource)))
    }
    from urllib.parse import parse_qsl

    with engine.connect() as conn:
        found = find_matches(conn, "Observation", parse_qsl(text.split("?", 1)[1]), limit=1000)
    assert in_memory == {res_id for _, res_id in found}, text
