"""Validate a resource of an already validated shape by checking its values alone.

Whether the R4B models accept a resource depends on two things: its *shape* (which elements
it has, how many of each, and whether each value is a string, number, boolean or null) and,
for each primitive value, whether that value is valid for the element it sits in.  Everything
fhir_core checks besides the primitive values (unknown elements, lists where a single value
belongs, choice elements given twice, a required primitive missing, nulls inside complex
elements) depends on the shape alone.  Feeds send the same few shapes all day: a CBC result
differs from the last one only in its numbers, dates and identifiers.

So once a shape has passed the full model check, the type annotation of each of its values is
looked up in the models (the same annotation pydantic validated it with) and kept as the
shape's *plan*.  A later resource of that shape is valid when each value passes its element's
own pydantic validator; values seen valid before (codes, systems, units) are found in a set.
Anything else (a new shape, a value that fails, a shape whose values cannot all be typed, a
resource holding another resource) goes through the full model check, which alone words the
errors.  So the memo can only skip work, never change a verdict; tests compare the two.
"""

from __future__ import annotations

import threading
import types
import typing
from typing import Any

from fhir_core.types import FhirBase
from pydantic import TypeAdapter

_MAX_SHAPES = 4_096
_MAX_GOOD = 8_192  # values remembered per element type
_MAX_GOOD_TEXT = 256  # longer strings are checked afresh each time

Shape = tuple[Any, ...]


class _Unplannable(Exception):
    """A shape whose values cannot all be given their element's type: never memoised."""


class _Nested(Exception):
    """A resource inside the resource (contained, Bundle entries): not memoised."""


class _Leaf:
    """One primitive element type's validator, with the values it has accepted."""

    __slots__ = ("adapter", "good")

    def __init__(self, annotation: Any) -> None:
        self.adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        self.good: set[Any] = set()

    def admit(self, value: Any) -> None:
        """Validate a value not seen before (ValidationError when invalid) and remember it."""
        self.adapter.validate_python(value)
        if len(self.good) >= _MAX_GOOD:
            self.good.clear()
        if type(value) is not str or len(value) <= _MAX_GOOD_TEXT:
            self.good.add(value)


# A plan holds, per value, its element type's _Leaf, or None where the shape settles the
# value: the root's resourceType (part of the memo's key) and nulls (the shape's value types
# hold None there, and there is only one None).
Plan = tuple[_Leaf | None, ...]
_plans: dict[tuple[str, Shape], Plan] = {}
_leaves: dict[tuple[int, type], _Leaf] = {}
_model_fields: dict[type, dict[str, Any]] = {}
_lock = threading.Lock()  # only for building _Leaf objects (TypeAdapter is costly to build)


# The walk runs over every element of every resource checked: values are handled inline,
# without a call each.  The shape is one flat tuple (keys, value types, and markers where an
# object or array opens and closes), not tuples nested like the JSON: the nested form built a
# tuple for every key and container, which cost a fifth more.  JSON keys are strings, so the
# integer markers cannot be taken for a key or a value type.
_OBJECT, _ARRAY, _END = 0, 1, 2


def _shape_of_dict(value: dict[str, Any], shape: list[Any], values: list[Any], top: bool) -> None:
    """Append the shape of a JSON object to ``shape``, its primitive values to ``values``."""
    if not top and "resourceType" in value:
        raise _Nested
    shape.append(_OBJECT)
    for key, item in value.items():
        shape.append(key)
        kind = type(item)
        if kind is dict:
            _shape_of_dict(item, shape, values, False)
        elif kind is list:
            _shape_of_list(item, shape, values)
        else:
            values.append(item)
            shape.append(kind)
    shape.append(_END)


def _shape_of_list(value: list[Any], shape: list[Any], values: list[Any]) -> None:
    shape.append(_ARRAY)
    for item in value:
        kind = type(item)
        if kind is dict:
            _shape_of_dict(item, shape, values, False)
        elif kind is list:
            _shape_of_list(item, shape, values)
        else:
            values.append(item)
            shape.append(kind)
    shape.append(_END)


def _shape(resource: dict[str, Any], values: list[Any]) -> Shape:
    shape: list[Any] = []
    _shape_of_dict(resource, shape, values, True)
    return tuple(shape)


def valid(res_type: str, resource: dict[str, Any]) -> bool:
    """True when ``resource`` has a known shape and every value passes its element's check;
    False means "not known here": the caller runs the full model check."""
    values: list[Any] = []
    try:
        key = (res_type, _shape(resource, values))
    except _Nested:
        return False
    plan = _plans.get(key)
    if plan is None:
        return False
    try:
        for leaf, value in zip(plan, values, strict=True):
            if leaf is not None and value not in leaf.good:  # most were seen: a set look-up
                leaf.admit(value)
    except Exception:  # any failure: the full check decides and words the error
        return False
    return True


def learn(res_type: str, resource: dict[str, Any], model: type[Any]) -> None:
    """Remember the plan of ``resource``'s shape, which has just passed the full check."""
    values: list[Any] = []
    try:
        shape = _shape(resource, values)
        plan: list[_Leaf | None] = []
        _plan_model(resource, model, plan, top=True)
    except (_Nested, _Unplannable):
        return
    if len(plan) != len(values):
        return  # the walks disagree: never trust such a plan
    if len(_plans) >= _MAX_SHAPES:
        _plans.clear()
    _plans[(res_type, shape)] = tuple(plan)


def clear() -> None:
    _plans.clear()
    _leaves.clear()


# --- the plan: each value's annotation, walked in the same order as _shape -----------------


def _fields(model: type[Any]) -> dict[str, Any]:
    """A model's fields by JSON name (and by Python name: the models populate by name)."""
    found = _model_fields.get(model)
    if found is None:
        found = {}
        for name, info in model.model_fields.items():
            found[name] = info.annotation
            if info.alias:
                found[info.alias] = info.annotation
        _model_fields[model] = found
    return found


def _strip_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise _Unplannable  # a real union (str or list of str): not worth typing
        return args[0]
    return annotation


def _plan_model(value: dict[str, Any], model: type[Any], plan: list[Any], *, top: bool) -> None:
    fields = _fields(model)
    for key, item in value.items():
        if top and key == "resourceType":
            _plan_value(item, None, plan)
            continue
        annotation = fields.get(key)
        if annotation is None:
            raise _Unplannable
        _plan_value(item, _strip_optional(annotation), plan)


def _plan_value(value: Any, annotation: Any, plan: list[Any]) -> None:
    if annotation is None or value is None:
        plan.append(None)  # settled by the shape (see Plan)
        return
    if typing.get_origin(annotation) is list:
        if type(value) is not list:
            raise _Unplannable
        (inner,) = typing.get_args(annotation)
        inner = _strip_optional(inner)
        for item in value:
            _plan_value(item, inner, plan)
        return
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        if type(value) is not dict:
            raise _Unplannable
        _plan_model(value, annotation.get_model_klass(), plan, top=False)
        return
    if type(value) in (dict, list):
        raise _Unplannable
    plan.append(_leaf(annotation, type(value)))


def _leaf(annotation: Any, kind: type) -> _Leaf:
    # By identity: annotations live as long as their models, and some hold unhashable parts.
    key = (id(annotation), kind)
    leaf = _leaves.get(key)
    if leaf is None:
        with _lock:
            leaf = _leaves.get(key)
            if leaf is None:
                leaf = _leaves[key] = _Leaf(annotation)
    return leaf
