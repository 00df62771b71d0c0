"""OBX-5 by OBX-2 value type → Observation.value[x], OBX-6 units and OBX-7 reference ranges.

Per the guide's OBX[Observation] map with the NM/SN/CWE/DTM/ED datatype maps.  Every problem is
a ``ValueError`` naming the value; the caller reports it as OBX-5 (code 102).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.mapped import Context
from adapters.hl7v2.parse import Segment, unescape

_UCUM = "http://unitsofmeasure.org"
_COMPARATORS = {"<": "<", ">": ">", "<=": "<=", ">=": ">="}
_LEADING_COMPARATOR = re.compile(r"^\s*(<=|>=|<|>)\s*(.+)$")
_RANGE = re.compile(r"^\s*([+-]?\d*\.?\d+)\s*[-~–]\s*([+-]?\d*\.?\d+)\s*$")
_MEDIA = {
    "PDF": "application/pdf",
    "JPEG": "image/jpeg",
    "JPG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "RTF": "application/rtf",
    "HTML": "text/html",
    "XML": "application/xml",
    "TEXT": "text/plain",
    "OCTET-STREAM": "application/octet-stream",
}
TEXT_TYPES = frozenset({"ST", "TX", "FT"})


def unit(obx: Segment) -> dict[str, str]:
    """OBX-6 → the unit part of a Quantity; a code only with its system (UCUM)."""
    code, text = obx.value(6, 1).strip(), obx.value(6, 2).strip()
    out: dict[str, str] = {}
    if code or text:
        out["unit"] = text or code
    if code and obx.value(6, 3).strip().upper() in ("UCUM", "ISO+", "ANS+") and " " not in code:
        out["system"], out["code"] = _UCUM, code
    return out


def quantity(text: str, units: dict[str, str]) -> dict[str, Any]:
    """NM text → Quantity; a leading comparator ("<0.5", common in LIS output) is kept."""
    comparator = None
    m = _LEADING_COMPARATOR.match(text)
    if m:
        comparator, text = m.group(1), m.group(2)
    out: dict[str, Any] = {"value": dt.decimal(text), **units}
    if comparator:
        out["comparator"] = _COMPARATORS[comparator]
    return out


def _structured_numeric(obx: Segment, units: dict[str, str]) -> tuple[str, Any]:
    if len(obx.components(5)) == 1:
        # Senders often send SN as plain text ("<0.10", "12"): read it like an NM.
        return "valueQuantity", quantity(obx.value(5), units)
    comparator, num1 = obx.value(5, 1).strip(), obx.value(5, 2).strip()
    separator, num2 = obx.value(5, 3).strip(), obx.value(5, 4).strip()
    if separator in ("-", "~") and num1 and num2:
        return "valueRange", {
            "low": {"value": dt.decimal(num1), **units},
            "high": {"value": dt.decimal(num2), **units},
        }
    if separator in (":", "/") and num1 and num2:
        return "valueRatio", {
            "numerator": {"value": dt.decimal(num1)},
            "denominator": {"value": dt.decimal(num2)},
        }
    if not num1:
        raise ValueError(f"structured numeric {obx.raw(5)!r} has no number")
    value: dict[str, Any] = {"value": dt.decimal(num1), **units}
    if comparator in _COMPARATORS:
        value["comparator"] = _COMPARATORS[comparator]
    elif comparator not in ("", "="):
        raise ValueError(f"structured numeric comparator {comparator!r} is not supported")
    return "valueQuantity", value


def attachment(obx: Segment) -> dict[str, Any]:
    kind, subtype = obx.value(5, 2).strip(), obx.value(5, 3).strip()
    encoding, data = obx.value(5, 4).strip().upper(), obx.value(5, 5).strip()
    content_type = _MEDIA.get(subtype.upper())
    if content_type is None and "/" in subtype:
        content_type = subtype.lower()
    elif content_type is None:
        content_type = "text/plain" if kind.upper() == "TEXT" else "application/octet-stream"
    if encoding == "BASE64":
        try:
            raw = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("ED data is not valid Base64") from exc
    elif encoding == "HEX":
        raw = bytes.fromhex(data)
    else:  # A (ASCII) or none: the text itself
        raw = data.encode("utf-8")
    out: dict[str, Any] = {"contentType": content_type}
    if raw:
        out["data"] = base64.b64encode(raw).decode("ascii")
    return out


def observation_value(ctx: Context, obx: Segment) -> tuple[str, Any] | None:
    """(value[x] element name, value) of an OBX, or None when OBX-5 is empty."""
    if not obx.raw(5).strip():
        return None
    kind = obx.value(2).strip().upper() or "ST"
    if kind in TEXT_TYPES:
        text = "\n".join(dt.raw_unescaped(obx, 5)).strip()
        return ("valueString", text) if text else None
    if kind == "NM":
        return "valueQuantity", quantity(obx.value(5), unit(obx))
    if kind == "SN":
        return _structured_numeric(obx, unit(obx))
    if kind in ("CE", "CWE", "CNE", "CF"):
        concept = ctx.cwe(obx, 5)
        return ("valueCodeableConcept", concept) if concept else None
    if kind in ("DT", "TS", "DTM"):
        value = dt.ts_to_fhir(obx.value(5), ctx.community.tz)
        return ("valueDateTime", value) if value else None
    if kind == "TM":
        return "valueString", obx.value(5).strip()
    if kind == "ED":
        # R4 Observation has no valueAttachment (R5 does): the report carries it instead.
        raise ValueError("ED values belong in DiagnosticReport.presentedForm")
    # Other types (RP, CX, XCN, ...): their readable text, components joined.
    d = obx.delimiters
    lines = [
        " ".join(unescape(c, d) for c in rep.split(d.component) if c) for rep in obx.repetitions(5)
    ]
    text = "\n".join(lines).strip()
    return ("valueString", text) if text else None


def reference_range(obx: Segment, units: dict[str, str]) -> dict[str, Any] | None:
    """OBX-7 "3.5-9.5", "<5", ">1" → low/high (with the result's unit); text always kept."""
    text = obx.value(7).strip()
    if not text:
        return None
    out: dict[str, Any] = {}
    if m := _RANGE.match(text):
        out["low"] = {"value": dt.decimal(m.group(1)), **units}
        out["high"] = {"value": dt.decimal(m.group(2)), **units}
    elif m := _LEADING_COMPARATOR.match(text):
        try:
            bound = {"value": dt.decimal(m.group(2)), **units}
        except ValueError:
            bound = None
        if bound is not None:
            out["high" if m.group(1).startswith("<") else "low"] = bound
    out["text"] = text
    return out
