"""One search parameter (name, value) → a SQL condition on ``resources`` (alias given).

Each criterion becomes ``rid IN (SELECT rid FROM idx_<kind> WHERE res_type = ? AND param = ?
AND <value test>)``: the planner can start from whichever index is most selective and probe the
others.  Chains, ``_has`` and composites are built from the same pieces.  All values are bound
parameters; the text is built directly (hub.search.sql), not through an expression tree.
"""

from __future__ import annotations

import re
from functools import cache

from hub.fhir.errors import InvalidSearch
from hub.search.definitions import SearchParam, get_param
from hub.search.sql import FALSE, Aliases, Sql, and_, in_, in_values, not_, or_, sql
from hub.search.units import canonical
from hub.search.values import (
    DateFormatError,
    date_range,
    decimal_precision_range,
    normalize_string,
)
from hub.services.identity.model import MASTER_PREFIX

_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_NUMBER_START = re.compile(r"^[+-]?(\d|\.\d)")
_INDEX_TABLE = {
    "token": "idx_token",
    "string": "idx_string",
    "date": "idx_date",
    "reference": "idx_reference",
    "quantity": "idx_quantity",
    "uri": "idx_uri",
    "number": "idx_number",
}


def index_table(kind: str) -> str:
    return _INDEX_TABLE[kind]


def split_values(raw: str, sep: str = ",") -> list[str]:
    """Split on unescaped separators; ``\\,`` ``\\|`` ``\\$`` stay literal."""
    if "\\" not in raw:
        return raw.split(sep)
    # Feed identifiers hold escaped bars (``LAB1\\|HGB``): matched by runs, not char by char.
    out: list[str] = []
    buf: list[str] = []
    for match in _escaped_parts(sep).finditer(raw):
        text, escaped = match.group(0), match.group(1)
        if escaped is not None:
            buf.append(escaped)
        elif text == sep:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(text)  # a run of plain characters, or a lone backslash at the end
    out.append("".join(buf))
    return out


@cache
def _escaped_parts(sep: str) -> re.Pattern[str]:
    plain = "[^\\\\" + re.escape(sep) + "]+"
    return re.compile("\\\\(.)|" + re.escape(sep) + "|" + plain + "|\\\\", re.S)


def split_token(value: str) -> tuple[str | None, bool, str | None]:
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


def _like(column: str, pattern: str) -> Sql:
    return sql(f"{column} LIKE ? ESCAPE '\\'", pattern)


class Criteria:
    """Builds conditions for one resource type (None: any type, common parameters only)."""

    def __init__(self, res_type: str | None, aliases: Aliases | None = None) -> None:
        self.res_type = res_type
        self.aliases = aliases or Aliases()

    # -- entry point --

    def condition(self, rows: str, name: str, value: str) -> Sql:
        """The condition on the ``resources`` alias ``rows`` for one parameter."""
        rid = f"{rows}.rid"
        if name.startswith("_has:"):
            return in_(rid, self._has(name, value))
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
            return in_(rid, self._chain(param, modifier, chain, value))
        if code == "_id":
            test = in_values(f"{rows}.res_id", [v for v in split_values(value) if v])
            return not_(test) if modifier == "not" else test
        if code == "_lastUpdated":
            return or_(*(self._last_updated(rows, v) for v in split_values(value)))
        if modifier == "missing":
            return self._missing(rows, param, value)
        if param.type == "composite":
            return self._composite(rows, param, value)
        if modifier == "not" and param.type == "token":
            return not_(in_(rid, self._rids(param, "", value)))
        return in_(rid, self._rids(param, modifier, value))

    def rid_subquery(self, name: str, value: str) -> Sql:
        """rids of this type's resources matching one parameter (for chains and _has)."""
        r = self.aliases.next("r")
        where = [sql(f"NOT {r}.deleted"), self.condition(r, name, value)]
        if self.res_type is not None:
            where.insert(0, sql(f"{r}.res_type = ?", self.res_type))
        cond = and_(*where)
        return Sql(f"SELECT {r}.rid FROM resources {r} WHERE {cond.text}", cond.params)

    # -- per kind --

    def _base(self, table: str, param_code: str, test: Sql | None = None) -> Sql:
        """``SELECT rid FROM <table> WHERE [res_type = ? AND] param = ? [AND (test)]``
        (``param IN (...)`` for a union parameter, stored as its parts)."""
        param = get_param(self.res_type, param_code)
        where = in_values("param", list(param.stored if param is not None else (param_code,)))
        if self.res_type is not None:
            text = f"SELECT rid FROM {table} WHERE res_type = ? AND {where.text}"
            params: tuple[object, ...] = (self.res_type, *where.params)
        else:
            text = f"SELECT rid FROM {table} WHERE {where.text}"
            params = where.params
        if test is None:
            return Sql(text, params)
        return Sql(f"{text} AND ({test.text})", params + test.params)

    def _rids(self, param: SearchParam, modifier: str, value: str) -> Sql:
        kind = param.type
        if kind == "reference" and modifier == "identifier":
            logical = self._token_rids(f"{param.code}:identifier", "", value)
            if "Patient" not in param.targets:
                return logical
            # Community-wide: any member's identifier names the person, and so all the
            # records linked to it in the patient index.
            patients = Criteria("Patient", self.aliases).rid_subquery("identifier", value)
            t = self.aliases.next("t")
            ids = Sql(
                f"SELECT {t}.res_id FROM resources {t} WHERE {t}.res_type = 'Patient' "
                f"AND {t}.rid IN ({patients.text})",
                patients.params,
            )
            linked = self._base(
                "idx_reference",
                param.code,
                and_(sql("target_type = 'Patient'"), in_("target_id", self._person(ids))),
            )
            return Sql(f"{logical.text} UNION {linked.text}", logical.params + linked.params)
        if kind == "token":
            return self._token_rids(param.code, modifier, value)
        if kind == "string":
            return self._string_rids(param.code, modifier, value)
        if kind == "date":
            self._no_modifier(param, modifier)
            tests = [self._date_test("lo", "hi", v) for v in split_values(value)]
            return self._base("idx_date", param.code, or_(*tests))
        if kind == "reference":
            return self._reference_rids(param, modifier, value)
        if kind == "quantity":
            self._no_modifier(param, modifier)
            tests = [self._quantity_test(v) for v in split_values(value)]
            return self._base("idx_quantity", param.code, or_(*tests))
        if kind == "number":
            self._no_modifier(param, modifier)
            tests = [self._number_test("value", v) for v in split_values(value)]
            return self._base("idx_number", param.code, or_(*tests))
        if kind == "uri":
            return self._uri_rids(param, modifier, value)
        raise InvalidSearch(f"search parameter {param.code!r} of type {kind} is not supported")

    @staticmethod
    def _no_modifier(param: SearchParam, modifier: str) -> None:
        if modifier:
            raise InvalidSearch(f"modifier :{modifier} is not supported on {param.code!r}")

    def _token_rids(self, code: str, modifier: str, value: str) -> Sql:
        tests = []
        for item in split_values(value):
            if modifier == "text":
                tests.append(_like("text", _escape_like(normalize_string(item)) + "%"))
                continue
            if modifier not in ("", "not"):
                raise InvalidSearch(f"modifier :{modifier} is not supported on token {code!r}")
            system, has_system, tok = split_token(item)
            parts = []
            if tok is not None:
                parts.append(sql("code = ?", tok))
            if has_system:
                parts.append(sql("system IS NULL") if system == "" else sql("system = ?", system))
            if not parts:
                raise InvalidSearch(f"empty token value for {code!r}")
            tests.append(and_(*parts))
        return self._base("idx_token", code, or_(*tests))

    def _string_rids(self, code: str, modifier: str, value: str) -> Sql:
        tests = []
        for item in split_values(value):
            if modifier == "exact":
                tests.append(sql("exact = ?", item))
            elif modifier == "contains":
                tests.append(_like("norm", "%" + _escape_like(normalize_string(item)) + "%"))
            elif modifier == "":
                tests.append(_like("norm", _escape_like(normalize_string(item)) + "%"))
            else:
                raise InvalidSearch(f"modifier :{modifier} is not supported on string {code!r}")
        return self._base("idx_string", code, or_(*tests))

    def _date_test(self, lo: str, hi: str, raw: str) -> Sql:
        prefix, text = _prefix(raw)
        try:
            slo, shi = date_range(text)
        except DateFormatError as exc:
            raise InvalidSearch(f"{raw!r} is not a valid date: {exc}", code="value") from exc
        if prefix == "eq":
            return sql(f"{lo} >= ? AND {hi} <= ?", slo, shi)
        if prefix == "ne":
            return sql(f"({lo} < ? OR {hi} > ?)", slo, shi)
        if prefix == "gt":
            return sql(f"{hi} > ?", shi)
        if prefix == "lt":
            return sql(f"{lo} < ?", slo)
        if prefix == "ge":
            return sql(f"{hi} > ?", slo)
        if prefix == "le":
            return sql(f"{lo} < ?", shi)
        if prefix == "sa":
            return sql(f"{lo} >= ?", shi)
        if prefix == "eb":
            return sql(f"{hi} <= ?", slo)
        # ap: overlap with the search range widened by 10% of its distance from now (≥ 1 day).
        from hub.store.repository import now_micros

        margin = max(abs(now_micros() - slo) // 10, 86_400_000_000)
        return sql(f"{lo} < ? AND {hi} > ?", shi + margin, slo - margin)

    def _last_updated(self, rows: str, raw: str) -> Sql:
        col = f"{rows}.last_updated"
        return self._date_test(col, f"({col} + 1)", raw)

    def _number_test(self, col: str, raw: str, factor: float = 1.0) -> Sql:
        prefix, text = _prefix(raw)
        try:
            number = float(text)
            lo, hi = decimal_precision_range(text)
        except (ValueError, IndexError) as exc:
            raise InvalidSearch(f"{raw!r} is not a number", code="value") from exc
        number, lo, hi = number * factor, lo * factor, hi * factor
        if prefix == "eq":
            return sql(f"{col} >= ? AND {col} < ?", lo, hi)
        if prefix == "ne":
            return sql(f"({col} < ? OR {col} >= ?)", lo, hi)
        if prefix == "ap":
            return sql(
                f"{col} >= ? AND {col} <= ?", number - abs(number) * 0.1, number + abs(number) * 0.1
            )
        operator = {"gt": ">", "lt": "<", "ge": ">=", "le": "<=", "sa": ">", "eb": "<"}[prefix]
        return sql(f"{col} {operator} ?", number)

    def _quantity_test(self, raw: str) -> Sql:
        parts = split_values(raw, "|")
        number = parts[0]
        system = parts[1] if len(parts) > 1 and parts[1] else None
        code = "|".join(parts[2:]) if len(parts) > 2 and parts[2] else None
        _, text = _prefix(number)
        if not _NUMBER_START.match(text):
            raise InvalidSearch(f"{raw!r} is not a quantity", code="value")
        if code:
            canon = canonical(1.0, code) if system in (None, "http://unitsofmeasure.org") else None
            if canon is not None:
                return and_(
                    sql("canon_code = ?", canon[1]),
                    self._number_test("canon_value", number, canon[0]),
                )
            unit_test = sql("(code = ? OR unit = ?)", code, code)
            if system:
                unit_test = and_(unit_test, sql("system = ?", system))
            return and_(unit_test, self._number_test("value", number))
        test = self._number_test("value", number)
        return and_(sql("system = ?", system), test) if system else test

    def _uri_rids(self, param: SearchParam, modifier: str, value: str) -> Sql:
        tests = []
        for item in split_values(value):
            if modifier == "below":
                tests.append(_like("uri", _escape_like(item) + "%"))
            elif modifier == "above":
                # The stored uri is a prefix of the searched one (no LIKE escaping of the column:
                # '%' and '_' are rare in canonical URLs and only widen the match).
                tests.append(sql("? LIKE (uri || ?)", item, "%"))
            elif modifier == "":
                tests.append(sql("uri = ?", item))
            else:
                raise InvalidSearch(f"modifier :{modifier} is not supported on uri {param.code!r}")
        return self._base("idx_uri", param.code, or_(*tests))

    def _reference_rids(self, param: SearchParam, modifier: str, value: str) -> Sql:
        tests = []
        type_filter = modifier if modifier and modifier[:1].isupper() else None
        if modifier and type_filter is None:
            raise InvalidSearch(
                f"modifier :{modifier} is not supported on reference {param.code!r}"
            )
        for item in split_values(value):
            if "://" in item or item.startswith("urn:"):
                parts = item.rstrip("/").split("/")
                test = sql("url = ?", item)
                if len(parts) >= 2 and parts[-2][:1].isupper():
                    test = or_(test, sql("target_type = ? AND target_id = ?", parts[-2], parts[-1]))
                tests.append(test)
                continue
            pieces = item.split("/")
            if (
                pieces[-1].startswith(MASTER_PREFIX)
                and "Patient" in param.targets
                and (len(pieces) < 2 or pieces[-2] == "Patient")
            ):
                # A master Patient (the patient index's person): every linked record.
                linked = Sql(
                    "SELECT patient_id FROM mpi_records WHERE master_id = ?", (pieces[-1],)
                )
                tests.append(
                    or_(
                        sql("target_type = 'Patient' AND target_id = ?", pieces[-1]),
                        and_(sql("target_type = 'Patient'"), in_("target_id", linked)),
                    )
                )
                continue
            if len(pieces) >= 2:
                target_type, target_id = pieces[-2], pieces[-1]
                if type_filter and type_filter != target_type:
                    tests.append(FALSE)
                    continue
                tests.append(sql("target_type = ? AND target_id = ?", target_type, target_id))
            elif type_filter:
                tests.append(sql("target_id = ? AND target_type = ?", item, type_filter))
            else:
                tests.append(sql("target_id = ?", item))
        return self._base("idx_reference", param.code, or_(*tests))

    def _missing(self, rows: str, param: SearchParam, value: str) -> Sql:
        if value not in ("true", "false"):
            raise InvalidSearch(f":missing takes true or false, not {value!r}", code="value")
        if param.type in ("composite", "special"):
            raise InvalidSearch(f":missing is not supported on {param.code!r}")
        # Per resource, through the rid index: every index table has (rid, param), and the
        # reference table has no index led by (res_type, param).
        m = self.aliases.next("m")
        stored = in_values(f"{m}.param", list(param.stored))
        present = Sql(
            f"EXISTS (SELECT 1 FROM {index_table(param.type)} {m} "
            f"WHERE {m}.rid = {rows}.rid AND {stored.text})",
            stored.params,
        )
        return not_(present) if value == "true" else present

    def _composite(self, rows: str, param: SearchParam, value: str) -> Sql:
        alternatives = []
        for item in split_values(value):
            parts = split_values(item, "$")
            if len(parts) != len(param.components):
                raise InvalidSearch(
                    f"{param.code!r} takes {len(param.components)} $-separated values", code="value"
                )
            tests = [
                in_(f"{rows}.rid", self._rids(get_param(self.res_type, comp) or param, "", part))
                for comp, part in zip(param.components, parts, strict=True)
            ]
            alternatives.append(and_(*tests))
        return or_(*alternatives)

    # -- chains and reverse chains --

    def _chain(self, param: SearchParam, modifier: str, chain: str, value: str) -> Sql:
        if modifier and not modifier[:1].isupper():
            raise InvalidSearch(f"modifier :{modifier} cannot start a chain")
        targets = [modifier] if modifier else list(param.targets)
        if not targets:
            raise InvalidSearch(f"chain on {param.code!r} needs a type: {param.code}:Type.{chain}")
        tests = []
        for target in targets:
            if get_param(target, chain.split(".")[0].split(":")[0]) is None and len(targets) > 1:
                continue
            t = self.aliases.next("t")
            # The condition sits on the chained rows directly: one level of nesting per hop
            # (SQLite's parser has a fixed depth).
            cond = Criteria(target, self.aliases).condition(t, chain, value)
            ids = Sql(
                f"SELECT {t}.res_id FROM resources {t} WHERE {t}.res_type = ? "
                f"AND NOT {t}.deleted AND {cond.text}",
                (target, *cond.params),
            )
            if target == "Patient":
                ids = self._person(ids)  # community-wide: through the patient index
            tests.append(and_(sql("target_type = ?", target), in_("target_id", ids)))
        if not tests:
            raise InvalidSearch(f"no target type of {param.code!r} has a parameter {chain!r}")
        return self._base("idx_reference", param.code, or_(*tests))

    def _person(self, ids: Sql) -> Sql:
        """Patient ids → the ids of every record of the same persons (each record is in the
        patient index, itself included: ``hub reindex-patients`` sees to stores from before)."""
        a, b = self.aliases.next("m"), self.aliases.next("m")
        return Sql(
            f"SELECT {a}.patient_id FROM mpi_records {a} JOIN mpi_records {b} "
            f"ON {a}.master_id = {b}.master_id WHERE {b}.patient_id IN ({ids.text})",
            ids.params,
        )

    def _has(self, name: str, value: str) -> Sql:
        parts = name.split(":", 3)
        if len(parts) < 4:
            raise InvalidSearch(f"{name!r}: _has takes _has:Type:reference:parameter")
        _, source_type, ref_code, rest = parts
        if self.res_type is None:
            raise InvalidSearch("_has needs a resource type")
        ref_param = get_param(source_type, ref_code)
        if ref_param is None or ref_param.type != "reference":
            raise InvalidSearch(f"{source_type} has no reference parameter {ref_code!r}")
        inner = Criteria(source_type, self.aliases).rid_subquery(rest, value)
        ref = self.aliases.next("x")
        own = self.aliases.next("o")
        return Sql(
            f"SELECT {own}.rid FROM resources {own} WHERE {own}.res_type = ? AND {own}.res_id IN "
            f"(SELECT {ref}.target_id FROM idx_reference {ref} WHERE {ref}.res_type = ? "
            f"AND {ref}.param = ? AND {ref}.target_type = ? AND {ref}.rid IN ({inner.text}))",
            (self.res_type, source_type, ref_code, self.res_type, *inner.params),
        )


__all__ = ["Criteria", "index_table", "split_token", "split_values"]
