"""fhir_core's null-in-a-list check, with the fields it looks at worked out once per class.

fhir_core refuses a null inside a list of complex elements (``"category": [null]``) with a
"before" model validator.  For every model it builds (about 30 for a mapped lab result) that
validator walks every field of the class, ~100 on an Observation counting the primitive
extension siblings, and works out again whether each is a list and whether it is primitive:
a quarter of the R4 model check of a feed message.  Which fields it looks at depends only on
the class, so here they are worked out once per class and kept.

The validator is compiled into each model's pydantic schema when the class is built, so it
cannot be swapped for another; its function's code is, and the schemas keep calling the same
function object.  ``install`` does this only when that function takes the parameters and looks
up the names this replacement was written against; otherwise fhir_core stays as it is (slower,
equally strict) and ``install`` returns False, which a test reports.
"""

from __future__ import annotations

import threading
import types
from typing import Any

_lock = threading.Lock()
_installed = False
# What the replaced function must look like: its parameters, and the module globals it and
# its replacement use.
_EXPECTED_PARAMETERS = ("cls", "data")
_GLOBALS = frozenset(
    {"is_list_type", "is_primitive_type", "PydanticCustomError", "ValidationError"}
)
_CACHE_NAME = "_HUB_NULL_CHECKED_FIELDS"  # the global the replacement keeps its fields in
original: Any = None  # the untouched validator, kept for the tests' comparison


def _reject_null_complex_elements(cls: Any, data: Any) -> Any:  # pragma: no cover - replaced
    """The replacement's source: runs with fhir_core.fhirabstractmodel's globals."""
    if not isinstance(data, dict):
        return data
    fields = _HUB_NULL_CHECKED_FIELDS.get(cls)  # type: ignore[name-defined]  # noqa: F821
    if fields is None:
        fields = tuple(
            (field.alias, name)
            for name, field in cls.model_fields.items()
            # ``<name>__ext`` lists are the extension siblings of primitive arrays; their
            # nulls are positional placeholders and stay.
            if is_list_type(field)  # type: ignore[name-defined]  # noqa: F821
            and not is_primitive_type(field)  # type: ignore[name-defined]  # noqa: F821
            and not name.endswith("__ext")
        )
        _HUB_NULL_CHECKED_FIELDS[cls] = fields  # type: ignore[name-defined]  # noqa: F821
    errors = []
    for alias, name in fields:
        key = alias if alias and alias in data else name
        value = data.get(key)
        if isinstance(value, list) and any(item is None for item in value):
            errors.append(
                {
                    "type": PydanticCustomError(  # type: ignore[name-defined]  # noqa: F821
                        "list_type",
                        "None is not allowed as an element of {field}",
                        {"field": key},
                    ),
                    "loc": (key,),
                    "input": value,
                }
            )
    if errors:
        raise ValidationError.from_exception_data(cls.__name__, errors)  # type: ignore[name-defined]  # noqa: F821
    return data


def install() -> bool:
    """Replace the validator's code once per process; False when fhir_core's differs."""
    global _installed, original
    with _lock:
        if _installed:
            return True
        try:
            from fhir_core import fhirabstractmodel
        except ImportError:
            return False
        method = getattr(fhirabstractmodel.FHIRAbstractModel, "reject_null_complex_elements", None)
        function = getattr(method, "__func__", None)
        code = getattr(function, "__code__", None)
        if (
            code is None
            or code.co_varnames[: code.co_argcount] != _EXPECTED_PARAMETERS
            or code.co_freevars
            or not set(code.co_names) >= _GLOBALS | {"model_fields"}
            or not vars(fhirabstractmodel).keys() >= _GLOBALS
        ):
            return False
        original = types.FunctionType(code, function.__globals__, function.__name__)
        vars(fhirabstractmodel)[_CACHE_NAME] = {}
        function.__code__ = _reject_null_complex_elements.__code__
        _installed = True
        return True


def is_installed() -> bool:
    return _installed
