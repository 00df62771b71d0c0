"""Validate each distinct FHIR element once: a memo over fhir_core's nested-element validator.

The R4B models validate every nested element (CodeableConcept, Reference, Quantity, ...) by
building a model for it, with fhir_core's Python checks on every one; that is ~60% of the cost
of validating an Observation.  Feeds repeat the same elements over and over (the category, the
item's code and reference range, the performer, the patient), and an element's validity depends
only on its JSON and its model class.  So, while the hub validates a write, an element already
validated as the same class with byte-identical JSON returns its earlier model instead of being
validated again.  Invalid elements raise and are never remembered; elements over 1 KB (an
Attachment's data, say) are always validated afresh.

The memo is active only inside ``validating()``, whose model is thrown away after the check, so
the shared element instances are never handed to code that could change them.  If fhir_core
changes its hook, ``install`` leaves the models as they are (slower, equally correct), and a
test says so.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

_MAX_KEY_BYTES = 1024
_MAX_ENTRIES = 20_000

_memo: dict[tuple[type, bytes], Any] = {}
_state = threading.local()
_installed = False


def _active() -> bool:
    return getattr(_state, "on", False)


@contextmanager
def validating() -> Iterator[None]:
    """Within this block (one thread), nested elements are validated through the memo."""
    previous = _active()
    _state.on = True
    try:
        yield
    finally:
        _state.on = previous


def install() -> bool:
    """Wrap fhir_core's element validator once per process; False if the hook is missing."""
    global _installed
    if _installed:
        return True
    try:
        from fhir_core.types import FhirBase
    except ImportError:
        return False
    hook = getattr(FhirBase, "fhir_model_validator", None)
    original = getattr(hook, "__func__", None)
    if original is None:
        return False

    def memoised(cls: Any, value: Any, model_klass: Any) -> Any:
        if not _active() or type(value) is not dict:
            return original(cls, value, model_klass)
        try:
            raw = orjson.dumps(value)
        except TypeError:  # not plain JSON (model instances, Decimals): no key
            return original(cls, value, model_klass)
        if len(raw) > _MAX_KEY_BYTES:
            return original(cls, value, model_klass)
        key = (model_klass, raw)
        found = _memo.get(key)
        if found is not None:
            return found
        model = original(cls, value, model_klass)  # raises when invalid: nothing remembered
        if len(_memo) >= _MAX_ENTRIES:
            _memo.clear()
        _memo[key] = model
        return model

    FhirBase.fhir_model_validator = classmethod(memoised)  # type: ignore[method-assign,assignment]
    _installed = True
    return True


def is_installed() -> bool:
    return _installed


def clear() -> None:
    _memo.clear()
