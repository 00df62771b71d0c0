"""The recognition catalogue (检查检验结果互认项目) and quality certifications (质控合格).

Data, not code: profiles/recognition/catalogue.json is a FHIR CodeSystem of the items members
recognise from one another, each with its kind (lab, imaging, ecg), whether its code is LOINC,
its validity in days (有效期), its county price and its specimen; certifications.json says which
members passed quality control for which items, from and to which dates.  Both are checked
when read (against community/community.json for member codes); a bad file raises ValueError
naming what is wrong.  Pure loading: no database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from adapters.feeds.config import profiles_dir as default_profiles_dir

KINDS = ("lab", "imaging", "ecg")
ALL_OF_KIND = {f"all-{kind}": kind for kind in KINDS}  # all-lab, all-imaging, all-ecg
# Each concept property: its declared CodeSystem.property type and the value[x] it carries.
PROPERTIES = {
    "kind": ("code", "valueCode"),
    "loinc": ("boolean", "valueBoolean"),
    "validityDays": ("integer", "valueInteger"),
    "priceYuan": ("decimal", "valueDecimal"),
    "specimen": ("string", "valueString"),
}
NO_SPECIMEN = "none"
_LOINC = re.compile(r"^(\d{1,7})-(\d)$")


def loinc_check_digit(number: str) -> int:
    """The LOINC mod-10 check digit of a code's number part ("58410" → 2)."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 0:  # the rightmost digit and every other one, doubled
            digit *= 2
        total += digit // 10 + digit % 10
    return (10 - total % 10) % 10


def is_loinc_code(code: str) -> bool:
    """A well-formed LOINC code whose check digit is right."""
    match = _LOINC.match(code)
    return bool(match) and loinc_check_digit(match.group(1)) == int(match.group(2))


@dataclass(frozen=True)
class Item:
    code: str
    display: str  # Chinese
    kind: str  # lab | imaging | ecg
    loinc: bool  # the code is a LOINC code (else a community code YGT-...)
    validity_days: int
    price_yuan: Decimal
    specimen: str  # 全血, 血清, 尿液 ...; "none" for imaging and ECG
    display_en: str = ""


@dataclass(frozen=True)
class Certification:
    member: str
    codes: frozenset[str]
    start: date
    end: date  # inclusive

    def covers(self, code: str, on: date) -> bool:
        return code in self.codes and self.start <= on <= self.end


class Catalogue:
    """The recognised items by code, and who is certified for which of them when."""

    def __init__(self, items: Iterable[Item], certifications: Iterable[Certification] = ()):
        self._items: dict[str, Item] = {}
        for item in items:
            if item.code in self._items:
                raise ValueError(f"recognition catalogue: duplicate code {item.code!r}")
            self._items[item.code] = item
        self.certifications: tuple[Certification, ...] = tuple(certifications)
        self._by_member: dict[str, list[Certification]] = {}
        for cert in self.certifications:
            self._by_member.setdefault(cert.member, []).append(cert)

    def item(self, code: str) -> Item | None:
        return self._items.get(code)

    @property
    def items(self) -> tuple[Item, ...]:
        """Every item, in the catalogue file's order."""
        return tuple(self._items.values())

    def of_kind(self, kind: str) -> tuple[Item, ...]:
        return tuple(item for item in self._items.values() if item.kind == kind)

    def certified(self, member: str, code: str, on: date) -> bool:
        """Whether ``member`` passed quality control for item ``code`` on ``on`` (the
        certification's from and to dates both count)."""
        return any(cert.covers(code, on) for cert in self._by_member.get(member, ()))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, code: object) -> bool:
        return code in self._items


# ---- the CodeSystem ----------------------------------------------------------------------


def _declared_properties(data: dict[str, Any], source: str) -> None:
    declared: dict[str, str] = {}
    for i, prop in enumerate(data.get("property") or []):
        if not isinstance(prop, dict) or not isinstance(prop.get("code"), str):
            raise ValueError(f"{source}: property[{i}] must be an object with a code")
        if prop["code"] in declared:
            raise ValueError(f"{source}: property {prop['code']!r} is declared twice")
        declared[prop["code"]] = prop.get("type")
    for name, (fhir_type, _) in PROPERTIES.items():
        if name not in declared:
            raise ValueError(f"{source}: CodeSystem.property does not declare {name!r}")
        if declared[name] != fhir_type:
            raise ValueError(
                f"{source}: property {name!r} must have type {fhir_type!r}, not {declared[name]!r}"
            )


def _property_values(concept: dict[str, Any], where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for prop in concept.get("property") or []:
        name = prop.get("code") if isinstance(prop, dict) else None
        if name not in PROPERTIES:
            raise ValueError(f"{where}: unknown property {name!r}")
        if name in values:
            raise ValueError(f"{where}: property {name!r} is given twice")
        value_key = PROPERTIES[name][1]
        if value_key not in prop:
            raise ValueError(f"{where}: property {name!r} needs {value_key}")
        values[name] = prop[value_key]
    missing = [name for name in PROPERTIES if name not in values]
    if missing:
        raise ValueError(f"{where}: missing property {', '.join(missing)}")
    return values


def _item(concept: Any, where: str) -> Item:
    if not isinstance(concept, dict):
        raise ValueError(f"{where}: a concept must be an object")
    code, display = concept.get("code"), concept.get("display")
    if not isinstance(code, str) or not code.strip() or code != code.strip():
        raise ValueError(f"{where}: code must be a non-empty string without surrounding spaces")
    where = f"{where} ({code})"
    if not isinstance(display, str) or not display.strip():
        raise ValueError(f"{where}: display must be a non-empty string")
    english = next(
        (
            d.get("value")
            for d in concept.get("designation") or []
            if isinstance(d, dict) and str(d.get("language", "")).lower().startswith("en")
        ),
        None,
    )
    if not isinstance(english, str) or not english.strip():
        raise ValueError(f"{where}: needs an English designation (language en)")

    values = _property_values(concept, where)
    kind = values["kind"]
    if kind not in KINDS:
        raise ValueError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    loinc = values["loinc"]
    if not isinstance(loinc, bool):
        raise ValueError(f"{where}: loinc must be true or false")
    if loinc and not is_loinc_code(code):
        raise ValueError(f"{where}: loinc is true but {code!r} is not a valid LOINC code")
    if not loinc and is_loinc_code(code):
        raise ValueError(f"{where}: {code!r} looks like a LOINC code but loinc is false")
    days = values["validityDays"]
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise ValueError(f"{where}: validityDays must be a whole number > 0")
    price = values["priceYuan"]
    if isinstance(price, bool) or not isinstance(price, int | Decimal | float):
        raise ValueError(f"{where}: priceYuan must be a number")
    price = Decimal(str(price))
    if not price.is_finite() or price <= 0:
        raise ValueError(f"{where}: priceYuan must be > 0")
    specimen = values["specimen"]
    if not isinstance(specimen, str) or not specimen.strip():
        raise ValueError(f"{where}: specimen must be a non-empty string")
    if (kind == "lab") == (specimen == NO_SPECIMEN):
        raise ValueError(
            f"{where}: a lab item needs a specimen; imaging and ECG items have specimen 'none'"
        )
    return Item(code, display, kind, loinc, days, price, specimen, english)


def parse_items(data: Any, source: str = "recognition catalogue") -> list[Item]:
    """The items of a catalogue CodeSystem (parsed JSON, decimals as Decimal)."""
    if not isinstance(data, dict) or data.get("resourceType") != "CodeSystem":
        raise ValueError(f"{source}: expected a FHIR CodeSystem")
    if data.get("content") != "complete":
        raise ValueError(f"{source}: content must be 'complete'")
    _declared_properties(data, source)
    concepts = data.get("concept")
    if not isinstance(concepts, list) or not concepts:
        raise ValueError(f"{source}: concept must be a non-empty list")
    items: list[Item] = []
    seen: set[str] = set()
    for i, concept in enumerate(concepts):
        item = _item(concept, f"{source}: concept[{i}]")
        if item.code in seen:
            raise ValueError(f"{source}: concept[{i}]: duplicate code {item.code!r}")
        seen.add(item.code)
        items.append(item)
    count = data.get("count")
    if count is not None and count != len(items):
        raise ValueError(f"{source}: count is {count} but there are {len(items)} concepts")
    return items


# ---- certifications ----------------------------------------------------------------------


def _date(raw: Any, name: str, where: str) -> date:
    if not isinstance(raw, str):
        raise ValueError(f"{where}: {name} must be a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{where}: {name} {raw!r} is not a date (YYYY-MM-DD)") from None


def _codes(raw: Any, items: dict[str, Item], where: str) -> frozenset[str]:
    entries = [raw] if isinstance(raw, str) else raw
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where}: items must be all-lab, all-imaging, all-ecg or a code list")
    codes: set[str] = set()
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f"{where}: items must be strings, not {entry!r}")
        if entry in ALL_OF_KIND:
            kind = ALL_OF_KIND[entry]
            codes.update(code for code, item in items.items() if item.kind == kind)
        elif entry in items:
            codes.add(entry)
        else:
            raise ValueError(f"{where}: {entry!r} is not an item of the recognition catalogue")
    return frozenset(codes)


def parse_certifications(
    data: Any,
    items: Iterable[Item],
    members: Iterable[str],
    source: str = "certifications",
) -> list[Certification]:
    """The certifications in ``data``, checked against the catalogue and the member codes."""
    by_code = {item.code: item for item in items}
    known = set(members)
    if not isinstance(data, dict) or not isinstance(data.get("certifications"), list):
        raise ValueError(f"{source}: expected an object with a certifications list")
    out: list[Certification] = []
    for i, raw in enumerate(data["certifications"]):
        where = f"{source}: certifications[{i}]"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: a certification must be an object")
        member = raw.get("member")
        if not isinstance(member, str) or member not in known:
            raise ValueError(f"{where}: member {member!r} is not a member code in community.json")
        where = f"{where} ({member})"
        codes = _codes(raw.get("items"), by_code, where)
        start = _date(raw.get("from"), "from", where)
        end = _date(raw.get("to"), "to", where)
        if start > end:
            raise ValueError(f"{where}: from {start} is after to {end}")
        out.append(Certification(member, codes, start, end))
    return out


# ---- loading -----------------------------------------------------------------------------


def _read_json(path: Path, **kwargs: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"), **kwargs)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def _member_codes(path: Path) -> set[str]:
    data = _read_json(path)
    members = data.get("members") if isinstance(data, dict) else None
    if not isinstance(members, list):
        raise ValueError(f"{path}: expected a members list")
    return {m["code"] for m in members if isinstance(m, dict) and isinstance(m.get("code"), str)}


@lru_cache(maxsize=8)
def _load(profiles: Path) -> Catalogue:
    catalogue_path = profiles / "recognition" / "catalogue.json"
    certifications_path = profiles / "recognition" / "certifications.json"
    items = parse_items(_read_json(catalogue_path, parse_float=Decimal), str(catalogue_path))
    certifications = parse_certifications(
        _read_json(certifications_path),
        items,
        _member_codes(profiles / "community" / "community.json"),
        str(certifications_path),
    )
    return Catalogue(items, certifications)


def load_catalogue(profiles_dir: Path | None = None) -> Catalogue:
    """The catalogue and certifications under ``profiles_dir`` (default: the profiles/ that
    adapters/feeds/config.py uses), read and checked once per directory."""
    return _load(Path(profiles_dir or default_profiles_dir()).resolve())
