"""One search parameter (name, value) → a SQL condition on ``resources`` (alias given).

Each criterion becomes ``rid IN (SELECT rid FROM idx_<kind> WHERE res_type = ? AND param = ?
AND <value test>)``: the planner can start from whichever index is most selective and probe the
others.  Chains, ``_has`` and composites are built from the same pieces.  All values are bound
parameters.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, false, literal, not_, or_, select, true
from sqlalchemy.sql.expression import FromClause

from hub.fhir.errors import InvalidSearch
from hub.search.definitions import SearchParam, get_param
from hub.search.units import canonical
from hub.search.values import DateFormatError, date_range, decimal_precision_range
from hub.store.schema import (
    INDEX_TABLES,
    MAX_TIME,
    MIN_TIME,
    idx_date,
    idx_number,
    idx_quantity,
    idx_reference,
    idx_string,
    idx_token,
    idx_uri,
    resources,
)

_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_NUMBER_START = re.compile(r"^[+-]?(\d|\.\d)")


def split_values(raw: str, sep: str = ",") -> list[str]:
    """Split on unescaped separators; ``\\,`` ``\\|`` ``\\$`` stay literal."""
    out, buf, i = [], [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            buf.append(raw[i + 1])
            i += 2
            continue
        if ch == sep:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    out.append("".join(buf))
    return out


def _split_token(value: str) -> tuple[str | None, bool, str | None]:
    """(system, system given, code) of ``sys|code``, ``|code``, ``sys|`` or ``code``."""
    parts = split_values(value, "|")
    if len(parts) == 1:
        return None, False, parts[0]
    system, code = parts[0], "|".join(parts[1:])
    return system, True, code or None


def _prefix(value: str) -> tuple[str, str]:
    if value[:2] in _PREFIXES and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Criteria:
    """Builds conditions for one resource type (None: any type, common parameters only)."""

    def __init__(self, res_type: str | None) -> None:
        self.res_type = res_type

    # -- entry point --

    def condition(self, rows: FromClause, name: str, value: str) -> ColumnElement[bool]:
        if name.startswith("_has:"):
            return rows.c.rid.in_(self._has(name, value))
        chain = None
        if "." in name:
            name, chain = name.split(".", 1)
        code, _, modifier = name.partition(":")
        param = get_param(self.res_type, code)
        if param is None:
            raise InvalidSearch(
                f"unknown search parameter {code!r} for {self.res_type or 'system'}"
            )
        if chain is not None:
            if param.type != "reference":
                raise InvalidSearch(f"{code!r} is not a reference parameter and cannot be chained")
            return rows.c.rid.in_(self._chain(param, modifier, chain, value))
        if code == "_id":
            ids = [v for v in split_values(value) if v]
            test = rows.c.res_id.in_(ids)
            return not_(test) if modifier == "not" else test
        if code == "_lastUpdated":
            return or_(*(self._last_updated(rows, v) for v in split_values(value)))
        if modifier == "missing":
            return self._missing(rows, param, value)
        if param.type == "composite":
            return self._composite(rows, param, value)
        if modifier == "not" and param.type == "token":
            return not_(rows.c.rid.in_(self._rids(param, "", value)))
        return rows.c.rid.in_(self._rids(param, modifier, value))

    def rid_subquery(self, name: str, value: str) -> Select[Any]:
        """rids of this type's resources matching one parameter (for chains and _has)."""
        r = resources.alias()
        query = select(r.c.rid).where(r.c.deleted.is_(False), self.condition(r, name, value))
        if self.res_type is not None:
            query = query.where(r.c.res_type == self.res_type)
        return query

    # -- per kind --

    def _base(self, table: Table, param_code: str) -> Select[Any]:
        query = select(table.c.rid).where(table.c.param == param_code)
        if self.res_type is not None:
            query = query.where(table.c.res_type == self.res_type)
        return query

    def _rids(self, param: SearchParam, modifier: str, value: str) -> Select[Any]:
        kind = param.type
        if kind == "reference" and modifier == "identifier":
            return self._token_rids(f"{param.code}:identifier", "", value)
        if kind == "token":
            return self._token_rids(param.code, modifier, value)
        if kind == "string":
            return self._string_rids(param.code, modifier, value)
        if kind == "date":
            table = idx_date
            self._no_modifier(param, modifier)
            tests = [self._date_test(table.c.lo, table.c.hi, v) for v in split_values(value)]
            return self._base(table, param.code).where(or_(*tests))
        if kind == "reference":
            return self._reference_rids(param, modifier, value)
        if kind == "quantity":
            self._no_modifier(param, modifier)
            tests = [self._quantity_test(v) for v in split_values(value)]
            return self._base(idx_quantity, param.code).where(or_(*tests))
        if kind == "number":
            self._no_modifier(param, modifier)
            col = idx_number.c.value
            tests = [self._number_test(col, v) for v in split_values(value)]
            return self._base(idx_number, param.code).where(or_(*tests))
        if kind == "uri":
            return self._uri_rids(param, modifier, value)
        raise InvalidSearch(f"search parameter {param.code!r} of type {kind} is not supported")

    @staticmethod
    def _no_modifier(param: SearchParam, modifier: str) -> None:
        if modifier:
            raise InvalidSearch(f"modifier :{modifier} is not supported on {param.code!r}")

    def _token_rids(self, code: str, modifier: str, value: str) -> Select[Any]:
        t = idx_token.c
        tests = []
        for item in split_values(value):
            if modifier == "text":
                from hub.search.values import normalize_string

                tests.append(t.text.like(_escape_like(normalize_string(item)) + "%", escape="\\"))
                continue
            if modifier not in ("", "not"):
                raise InvalidSearch(f"modifier :{modifier} is not supported on token {code!r}")
            system, has_system, tok = _split_token(item)
            parts = []
            if tok is not None:
                parts.append(t.code == tok)
            if has_system:
                parts.append(t.system.is_(None) if system == "" else t.system == system)
            if not parts:
                raise InvalidSearch(f"empty token value for {code!r}")
            tests.append(and_(*parts))
        return self._base(idx_token, code).where(or_(*tests))

    def _string_rids(self, code: str, modifier: str, value: str) -> Select[Any]:
        from hub.search.values import normalize_string

        s = idx_string.c
        tests = []
        for item in split_values(value):
            if modifier == "exact":
                tests.append(s.exact == item)
            elif modifier == "contains":
                tests.append(
                    s.norm.like("%" + _escape_like(normalize_string(item)) + "%", escape="\\")
                )
            elif modifier == "":
                tests.append(s.norm.like(_escape_like(normalize_string(item)) + "%", escape="\\"))
            else:
                raise InvalidSearch(f"modifier :{modifier} is not supported on string {code!r}")
        return self._base(idx_string, code).where(or_(*tests))

    def _date_test(self, lo: Any, hi: Any, raw: str) -> ColumnElement[bool]:
        prefix, text = _prefix(raw)
        try:
            slo, shi = date_range(text)
        except DateFormatError as exc:
            raise InvalidSearch(f"{raw!r} is not a valid date: {exc}", code="value") from exc
        if prefix == "eq":
            return and_(lo >= slo, hi <= shi)
        if prefix == "ne":
            return or_(lo < slo, hi > shi)
        if prefix == "gt":
            return hi > shi
        if prefix == "lt":
            return lo < slo
        if prefix == "ge":
            return hi > slo
        if prefix == "le":
            return lo < shi
        if prefix == "sa":
            return lo >= shi
        if prefix == "eb":
            return hi <= slo
        # ap: overlap with the search range widened by 10% of its distance from now (≥ 1 day).
        from hub.store.repository import now_micros

        margin = max(abs(now_micros() - slo) // 10, 86_400_000_000)
        return and_(lo < shi + margin, hi > slo - margin)

    def _last_updated(self, rows: FromClause, raw: str) -> ColumnElement[bool]:
        col = rows.c.last_updated
        return self._date_test(col, col + 1, raw)

    def _number_test(self, col: Any, raw: str, factor: float = 1.0) -> ColumnElement[bool]:
        prefix, text = _prefix(raw)
        try:
            number = float(text)
            lo, hi = decimal_precision_range(text)
        except (ValueError, IndexError) as exc:
            raise InvalidSearch(f"{raw!r} is not a number", code="value") from exc
        number, lo, hi = number * factor, lo * factor, hi * factor
        tests = {
            "eq": lambda: and_(col >= lo, col < hi),
            "ne": lambda: or_(col < lo, col >= hi),
            "gt": lambda: col > number,
            "lt": lambda: col < number,
            "ge": lambda: col >= number,
            "le": lambda: col <= number,
            "sa": lambda: col > number,
            "eb": lambda: col < number,
            "ap": lambda: and_(
                col >= number - abs(number) * 0.1, col <= number + abs(number) * 0.1
            ),
        }
        return tests[prefix]()

    def _quantity_test(self, raw: str) -> ColumnElement[bool]:
        parts = split_values(raw, "|")
        number = parts[0]
        system = parts[1] if len(parts) > 1 and parts[1] else None
        code = "|".join(parts[2:]) if len(parts) > 2 and parts[2] else None
        q = idx_quantity.c
        _, text = _prefix(number)
        if not _NUMBER_START.match(text):
            raise InvalidSearch(f"{raw!r} is not a quantity", code="value")
        if code:
            canon = canonical(1.0, code) if system in (None, "http://unitsofmeasure.org") else None
            if canon is not None:
                return and_(
                    q.canon_code == canon[1], self._number_test(q.canon_value, number, canon[0])
                )
            unit_test = or_(q.code == code, q.unit == code)
            if system:
                unit_test = and_(unit_test, q.system == system)
            return and_(unit_test, self._number_test(q.value, number))
        test = self._number_test(q.value, number)
        return and_(q.system == system, test) if system else test

    def _uri_rids(self, param: SearchParam, modifier: str, value: str) -> Select[Any]:
        u = idx_uri.c
        tests = []
        for item in split_values(value):
            if modifier == "below":
                tests.append(u.uri.like(_escape_like(item) + "%", escape="\\"))
            elif modifier == "above":
                tests.append(literal(item).like(u.uri + "%"))
            elif modifier == "":
                tests.append(u.uri == item)
            else:
                raise InvalidSearch(f"modifier :{modifier} is not supported on uri {param.code!r}")
        return self._base(idx_uri, param.code).where(or_(*tests))

    def _reference_rids(self, param: SearchParam, modifier: str, value: str) -> Select[Any]:
        r = idx_reference.c
        tests = []
        type_filter = modifier if modifier and modifier[:1].isupper() else None
        if modifier and type_filter is None:
            raise InvalidSearch(
                f"modifier :{modifier} is not supported on reference {param.code!r}"
            )
        for item in split_values(value):
            if "://" in item or item.startswith("urn:"):
                parts = item.rstrip("/").split("/")
                test = r.url == item
                if len(parts) >= 2 and parts[-2][:1].isupper():
                    test = or_(test, and_(r.target_type == parts[-2], r.target_id == parts[-1]))
                tests.append(test)
                continue
            pieces = item.split("/")
            if len(pieces) >= 2:
                target_type, target_id = pieces[-2], pieces[-1]
                if type_filter and type_filter != target_type:
                    tests.append(false())
                    continue
                tests.append(and_(r.target_type == target_type, r.target_id == target_id))
            else:
                test = r.target_id == item
                if type_filter:
                    test = and_(test, r.target_type == type_filter)
                tests.append(test)
        return self._base(idx_reference, param.code).where(or_(*tests))

    def _missing(self, rows: FromClause, param: SearchParam, value: str) -> ColumnElement[bool]:
        if value not in ("true", "false"):
            raise InvalidSearch(f":missing takes true or false, not {value!r}", code="value")
        if param.type in ("composite", "special"):
            raise InvalidSearch(f":missing is not supported on {param.code!r}")
        present = rows.c.rid.in_(self._base(INDEX_TABLES[param.type], param.code))
        return not_(present) if value == "true" else present

    def _composite(self, rows: FromClause, param: SearchParam, value: str) -> ColumnElement[bool]:
        alternatives = []
        for item in split_values(value):
            parts = split_values(item, "$")
            if len(parts) != len(param.components):
                raise InvalidSearch(
                    f"{param.code!r} takes {len(param.components)} $-separated values", code="value"
                )
            tests = [
                rows.c.rid.in_(self._rids(get_param(self.res_type, comp) or param, "", part))
                for comp, part in zip(param.components, parts, strict=True)
            ]
            alternatives.append(and_(*tests))
        return or_(*alternatives)

    # -- chains and reverse chains --

    def _chain(self, param: SearchParam, modifier: str, chain: str, value: str) -> Select[Any]:
        if modifier and not modifier[:1].isupper():
            raise InvalidSearch(f"modifier :{modifier} cannot start a chain")
        targets = [modifier] if modifier else list(param.targets)
        if not targets:
            raise InvalidSearch(f"chain on {param.code!r} needs a type: {param.code}:Type.{chain}")
        r = idx_reference.c
        tests = []
        for target in targets:
            inner = Criteria(target)
            if get_param(target, chain.split(".")[0].split(":")[0]) is None and len(targets) > 1:
                continue
            target_rows = resources.alias()
            ids = select(target_rows.c.res_id).where(
                target_rows.c.res_type == target,
                target_rows.c.rid.in_(inner.rid_subquery(chain, value)),
            )
            tests.append(and_(r.target_type == target, r.target_id.in_(ids)))
        if not tests:
            raise InvalidSearch(f"no target type of {param.code!r} has a parameter {chain!r}")
        return self._base(idx_reference, param.code).where(or_(*tests))

    def _has(self, name: str, value: str) -> Select[Any]:
        parts = name.split(":", 3)
        if len(parts) < 4:
            raise InvalidSearch(f"{name!r}: _has takes _has:Type:reference:parameter")
        _, source_type, ref_code, rest = parts
        if self.res_type is None:
            raise InvalidSearch("_has needs a resource type")
        ref_param = get_param(source_type, ref_code)
        if ref_param is None or ref_param.type != "reference":
            raise InvalidSearch(f"{source_type} has no reference parameter {ref_code!r}")
        source = Criteria(source_type)
        ref = idx_reference.c
        ids = select(ref.target_id).where(
            ref.res_type == source_type,
            ref.param == ref_code,
            ref.target_type == self.res_type,
            ref.rid.in_(source.rid_subquery(rest, value)),
        )
        own = resources.alias()
        return select(own.c.rid).where(own.c.res_type == self.res_type, own.c.res_id.in_(ids))


def always() -> ColumnElement[bool]:
    return true()


__all__ = ["MAX_TIME", "MIN_TIME", "Criteria", "always", "split_values"]
