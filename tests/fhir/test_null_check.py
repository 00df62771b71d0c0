"""The null-in-a-list check works out its fields once per class (hub.fhir.null_check), and
accepts and refuses exactly what fhir_core's own check does."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic_core import ValidationError

from hub.fhir import null_check
from hub.fhir.errors import Unprocessable
from hub.fhir.validation import validate_resource

_CASES: list[tuple[str, Any]] = [
    ("Observation", {"status": "final", "category": [None, {"text": "lab"}]}),
    ("Observation", {"category": [{"text": "lab"}], "performer": [None]}),
    ("Observation", {"component": [], "note": [{"text": "x"}, None]}),
    ("Observation", "not a dict"),
    ("Patient", {"identifier": [None], "name": [None], "telecom": [{"value": "1"}]}),
    # A null in a list of primitives is a placeholder lining a value up with its extension.
    ("HumanName", {"given": ["伟", None], "_given": [None, {"extension": []}]}),
    ("DiagnosticReport", {"result": [{"reference": "Observation/1"}, None]}),
    ("Bundle", {"entry": [None]}),
    ("Provenance", {"target": [{"reference": "Patient/1"}], "agent": [None, None]}),
    ("Patient", {}),
]


def _outcome(check: Any, cls: type, data: Any) -> Any:
    try:
        return ("accepted", check(cls, data))
    except ValidationError as exc:
        return ("refused", [(e["type"], e["loc"], e["msg"]) for e in exc.errors()])


def test_installed_by_validation() -> None:
    validate_resource({"resourceType": "Patient"})
    assert null_check.is_installed(), "fhir_core's null check changed: left as it was (slower)"


@pytest.mark.parametrize(("res_type", "data"), _CASES)
def test_same_answers_as_fhir_cores_own_check(res_type: str, data: Any) -> None:
    validate_resource({"resourceType": "Patient"})  # installs
    cls = get_fhir_model_class(res_type)
    ours = FHIRAbstractModel.reject_null_complex_elements.__func__  # type: ignore[attr-defined]
    for _ in range(2):  # the first call works the fields out, the second uses them
        assert _outcome(ours, cls, data) == _outcome(null_check.original, cls, data)


def test_a_null_in_a_list_of_elements_is_refused_with_its_path() -> None:
    with pytest.raises(Unprocessable) as err:
        validate_resource(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "Hb"},
                "category": [None, {"text": "laboratory"}],
            }
        )
    assert "Observation.category" in str(err.value)


def test_a_null_lining_a_primitive_up_with_its_extension_is_accepted() -> None:
    validate_resource(
        {
            "resourceType": "Patient",
            "name": [
                {
                    "family": "王",
                    "given": ["伟", None],
                    "_given": [
                        None,
                        {"extension": [{"url": "https://example.org/x", "valueString": "小"}]},
                    ],
                }
            ],
        }
    )
