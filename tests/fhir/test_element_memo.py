"""The element memo changes how often elements are validated, never what is accepted."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from hub.fhir import element_memo
from hub.fhir.errors import Unprocessable
from hub.fhir.validation import validate_resource

LOINC = "http://loinc.org"


def observation(**changes: Any) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "718-7", "display": "血红蛋白"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 132, "unit": "g/L", "system": "http://unitsofmeasure.org"},
    }
    obs.update(changes)
    return obs


def test_memo_is_installed_by_validation() -> None:
    validate_resource(observation())
    assert element_memo.is_installed(), "fhir_core's element hook changed: memo not installed"


def test_invalid_element_after_a_valid_twin_is_still_rejected() -> None:
    element_memo.clear()
    validate_resource(observation())
    bad_code = {"coding": [{"system": LOINC, "code": "718-7", "display": "血红蛋白", "x": 1}]}
    with pytest.raises(Unprocessable) as err:
        validate_resource(observation(code=bad_code))
    assert any("Observation.code.coding[0]" in e for i in err.value.issues for e in i.expression)
    # Twice: a failure is not remembered as a success either.
    with pytest.raises(Unprocessable):
        validate_resource(observation(code=bad_code))


def test_same_json_is_judged_per_element_type() -> None:
    element_memo.clear()
    validate_resource(observation())  # {"reference": "Patient/p1"} remembered as a Reference
    with pytest.raises(Unprocessable):
        validate_resource(observation(code={"reference": "Patient/p1"}))


def test_nulls_and_choice_rules_still_apply_on_remembered_elements() -> None:
    element_memo.clear()
    quantity = {"value": 1, "unit": "g/L"}
    validate_resource(observation(valueQuantity=quantity))
    with pytest.raises(Unprocessable):
        validate_resource(observation(valueQuantity=quantity, valueString="1 g/L"))
    with pytest.raises(Unprocessable):
        validate_resource(observation(category=[None]))


def test_models_outside_the_hub_check_share_nothing() -> None:
    validate_resource(observation())
    model = get_fhir_model_class("Observation")
    first = model.model_validate(copy.deepcopy(observation()))
    second = model.model_validate(copy.deepcopy(observation()))
    assert first.code is not second.code
