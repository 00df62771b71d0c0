"""Which regional centre receives an order: the routing rules, kept as data.

``profiles/routing/rules.json`` lists, in order, rules matching an order's kind (lab, imaging,
ecg: the recognition catalogue's item kinds), its catalogue item, one of its codes
(``system|code``, a member's local code included) and optionally the ordering member; the
first that matches names the destination.  A destination named in the order itself (the
ServiceRequest's performer; for HL7 feeds the field the member's ``orderDestination`` points
at, MSH-6 by default) wins over the rules.

Which orders are routed at all:
- an order naming a performer other than its orderer, when the orderer is of a kind in
  ``routeOrdersOf`` (township and community centres) or the performer of a kind in
  ``centres`` (the lab and imaging centres): the lead hospital's order to its own lab is not
  routed, a township centre's order to the lab centre is, and so is anyone's order naming a
  regional centre;
- an order naming no performer, from a member of a kind in ``routeOrdersOf``, whose kind,
  item or code a rule matches.

Pure: loading and checking the file, and deciding; no database.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from adapters.feeds.config import Community, profiles_dir
from hub.services.recognition.catalogue import KINDS


@dataclass(frozen=True)
class Rule:
    destination: str  # member code
    kind: str | None = None
    item: str | None = None  # recognition catalogue code
    code: tuple[str, str] | None = None  # (system, code)
    orderer: str | None = None  # member code
    why: str = ""

    def matches(self, order: OrderFacts) -> bool:
        return (
            (self.kind is None or self.kind == order.kind)
            and (self.item is None or self.item == order.item)
            and (self.code is None or self.code in order.codes)
            and (self.orderer is None or self.orderer == order.orderer)
        )

    def describe(self) -> str:
        said = [
            f"{name} {value}"
            for name, value in (
                ("kind", self.kind),
                ("item", self.item),
                ("code", "|".join(self.code) if self.code else None),
                ("orderer", self.orderer),
            )
            if value
        ]
        return "rule " + ", ".join(said)


@dataclass(frozen=True)
class RoutingRules:
    route_orders_of: frozenset[str]  # member kinds whose orders are routed
    centres: frozenset[str]  # member kinds an order may name to be routed from anyone
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class OrderFacts:
    """What the rules look at, read from a ServiceRequest by the router."""

    orderer: str  # member code
    orderer_kind: str
    named: str | None  # the member the order names as performer, if any
    named_kind: str | None
    kind: str | None  # lab | imaging | ecg, from the catalogue item or the category
    item: str | None
    codes: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Decision:
    destination: str
    because: str  # "named by the order", or the rule's description


def decide(rules: RoutingRules, order: OrderFacts) -> Decision | None:
    """Where the order goes, or None when it is not routed."""
    if order.named is not None:
        if order.named == order.orderer:
            return None  # the member's own department: nothing to route
        if order.orderer_kind in rules.route_orders_of or order.named_kind in rules.centres:
            return Decision(order.named, "named by the order")
        return None
    if order.orderer_kind not in rules.route_orders_of:
        return None
    for rule in rules.rules:
        if rule.matches(order) and rule.destination != order.orderer:
            return Decision(rule.destination, rule.describe())
    return None


def _text(raw: Mapping[str, Any], name: str, where: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {name} must be a non-empty string")
    return value.strip()


def parse_rules(data: Any, members: Collection[str], source: str = "routing rules") -> RoutingRules:
    """The rules file's content, checked: member codes known, kinds known, every rule saying
    something to match on.  A bad file raises ValueError naming what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise ValueError(f"{source}: an object with a 'rules' list is expected")
    rules = []
    for i, raw in enumerate(data["rules"]):
        where = f"{source}: rules[{i}]"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: an object is expected")
        destination = _text(raw, "destination", where)
        if destination is None or destination not in members:
            raise ValueError(f"{where}: destination {destination!r} is not a member")
        kind = _text(raw, "kind", where)
        if kind is not None and kind not in KINDS:
            raise ValueError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        orderer = _text(raw, "orderer", where)
        if orderer is not None and orderer not in members:
            raise ValueError(f"{where}: orderer {orderer!r} is not a member")
        code_text = _text(raw, "code", where)
        code = None
        if code_text is not None:
            system, bar, value = code_text.rpartition("|")
            if not bar or not system or not value:
                raise ValueError(f"{where}: code must be 'system|code'")
            code = (system, value)
        item = _text(raw, "item", where)
        if kind is None and item is None and code is None:
            raise ValueError(f"{where}: a rule matches on kind, item or code")
        why = raw.get("why", "")
        rules.append(Rule(destination, kind, item, code, orderer, str(why)))
    return RoutingRules(
        route_orders_of=frozenset(data.get("routeOrdersOf") or ()),
        centres=frozenset(data.get("centres") or ()),
        rules=tuple(rules),
    )


def load_rules(community: Community, profiles: Path | None = None) -> RoutingRules:
    path = (profiles or profiles_dir()) / "routing" / "rules.json"
    return _load(path, frozenset(community.members))


@lru_cache(maxsize=8)
def _load(path: Path, members: frozenset[str]) -> RoutingRules:
    return parse_rules(json.loads(path.read_text(encoding="utf-8")), members, str(path))
