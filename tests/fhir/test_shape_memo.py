"""The shape memo changes how resources are validated, never what is accepted.

Each check here compares the hub's verdict with the R4B model's own, run afresh."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.fhir import shape_memo
from hub.fhir.errors import FhirError, Unprocessable
from hub.fhir.validation import SUPPORTED, validate_resource

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "fhir-r4"
LOINC = "http://loinc.org"

Path_ = tuple[str | int, ...]


def observation(**changes: Any) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": "https://ygt.example.org/sid/obx", "value": "R1|HGB"}],
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "718-7", "display": "血红蛋白"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-10-21T08:00:00+08:00",
        "valueQuantity": {"value": 132, "unit": "g/L", "system": "http://unitsofmeasure.org"},
    }
    obs.update(changes)
    return obs


def model_accepts(resource: dict[str, Any]) -> bool:
    """The R4B model's verdict, with no memo in the way."""
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(copy.deepcopy(resource))
    except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
        return False
    return True


def accepted_afresh(resource: dict[str, Any]) -> bool:
    """The hub's verdict with the shape memo out of the way (every resource fully checked)."""
    with patch.object(shape_memo, "valid", lambda *_: False):
        return hub_accepts(resource)


def hub_accepts(resource: dict[str, Any]) -> bool:
    try:
        validate_resource(copy.deepcopy(resource))
    except FhirError:
        return False
    return True


def leaves(value: Any, path: Path_ = ()) -> Iterator[Path_]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, (*path, i))
    elif path != ("resourceType",):
        yield path


def replaced(resource: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def corpus_resources() -> list[dict[str, Any]]:
    """The corpus's resources of served types that the model accepts (entries included)."""
    found: list[dict[str, Any]] = []
    for file in sorted(CORPUS.glob("*.json")):
        data = json.loads(file.read_text(encoding="utf-8"))
        candidates = [data] + [
            e["resource"] for e in data.get("entry") or [] if isinstance(e.get("resource"), dict)
        ]
        found += [
            r
            for r in candidates
            if r.get("resourceType") in SUPPORTED
            and r.get("resourceType") != "Bundle"
            and "contained" not in r
            and model_accepts(r)
        ]
    return found


RESOURCES = corpus_resources()
# Values that are valid for some primitive types and not for others.
TRICKY: list[Any] = [
    "",
    " ",
    " padded",
    "two  spaces",
    "line\nbreak",
    "x" * 300,
    "2026",
    "2026-02-30",
    "2026-13-01",
    "2026-10-21T08:00:00",
    "2026-10-21T08:00:00+08:00",
    "2026-10-21T24:00:00Z",
    "08:00:00",
    "25:00:00",
    "1.5",
    "-0",
    "1e3",
    "abc",
    "Patient/1",
    "urn:uuid:1d99f861-655b-5a25-8088-27ed643e3a05",
    "bad id!",
    "真",
    0,
    -1,
    1,
    3.25,
    1e300,
    True,
    False,
    None,
]


def test_the_corpus_is_there() -> None:
    assert len(RESOURCES) >= 30


def test_a_twin_with_other_values_is_accepted_without_the_model() -> None:
    shape_memo.clear()
    validate_resource(observation())
    twin = observation(
        identifier=[{"system": "https://ygt.example.org/sid/obx", "value": "R2|HGB"}],
        effectiveDateTime="2026-11-02T09:30:00+08:00",
        valueQuantity={"value": 141, "unit": "g/L", "system": "http://unitsofmeasure.org"},
    )
    assert shape_memo.valid("Observation", twin)


def test_a_bad_value_in_a_known_shape_gets_the_models_own_error() -> None:
    bad = observation(effectiveDateTime="2026-02-30T08:00:00+08:00")
    shape_memo.clear()
    with pytest.raises(Unprocessable) as fresh:
        validate_resource(bad)
    validate_resource(observation())  # the shape is now known
    assert not shape_memo.valid("Observation", bad)
    with pytest.raises(Unprocessable) as known:
        validate_resource(bad)
    assert [i.expression for i in known.value.issues] == [i.expression for i in fresh.value.issues]
    assert known.value.issues[0].expression == ["Observation.effectiveDateTime"]


def test_other_shapes_and_resources_inside_resources_are_not_taken_on_trust() -> None:
    shape_memo.clear()
    validate_resource(observation())
    assert not shape_memo.valid("Observation", observation(valueString="132 g/L"))
    both = observation(valueString="132 g/L")  # two value[x]: the shape itself is invalid
    assert not hub_accepts(both)
    contained = observation(contained=[{"resourceType": "Patient", "id": "p"}])
    validate_resource(contained)
    assert not shape_memo.valid("Observation", contained)


def test_the_element_a_value_sits_in_decides_its_check() -> None:
    """The same text is a valid string and an invalid code: the plan knows which is which."""
    shape_memo.clear()
    validate_resource(observation())
    spaced = "two  spaces"
    assert hub_accepts(observation(code={"coding": [{"system": LOINC, "display": spaced}]}))
    assert not hub_accepts(observation(code={"coding": [{"system": LOINC, "code": spaced}]}))
    assert not hub_accepts(observation(status=" final"))


@pytest.mark.parametrize("index", range(0, len(RESOURCES)))
def test_every_corpus_value_replaced_by_tricky_ones_gets_the_models_verdict(index: int) -> None:
    resource = RESOURCES[index]
    shape_memo.clear()
    validate_resource(copy.deepcopy(resource))
    paths = list(leaves(resource))
    paths = paths[:: max(1, len(paths) // 12)]  # spread over the whole resource
    trusted = 0
    for path in paths:
        for value in TRICKY:
            changed = replaced(resource, path, value)
            trusted += shape_memo.valid(changed["resourceType"], changed)
            assert hub_accepts(changed) == accepted_afresh(changed), (path, value)
    assert trusted, "no replacement was judged by the memo: the comparison proves nothing"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.data(),
    st.one_of(
        st.text(max_size=40),
        st.from_regex(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2})?)?)?"),
        st.integers(),
        st.floats(allow_nan=False),
        st.booleans(),
    ),
)
def test_random_values_in_known_shapes_get_the_models_verdict(data: Any, value: Any) -> None:
    resource = data.draw(st.sampled_from(RESOURCES))
    validate_resource(copy.deepcopy(resource))  # the shape is known from here on
    path = data.draw(st.sampled_from(list(leaves(resource))))
    changed = replaced(resource, path, value)
    assert hub_accepts(changed) == accepted_afresh(changed)
