"""The master patient index's matching rules, read from profiles/identity/matching.json.

Data, not code: which identifier systems are exact keys, the field weights of the fallback
score and the link/review thresholds.  The file is checked when read; a bad one raises
ValueError naming what is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from adapters.feeds.config import profiles_dir

KEY_KINDS = ("resident-id", "ehealth-card", "insurance-card", "passport")
CHECKS = {"resident-id": ("gb11643",)}
FIELDS = ("name", "birthDate", "gender", "phone", "address")


def default_rules_path() -> Path:
    return profiles_dir() / "identity" / "matching.json"


@dataclass(frozen=True)
class KeyRule:
    kind: str
    system: str | None = None  # an exact identifier system ...
    system_prefix: str | None = None  # ... or a prefix (passport/{ISO 3166 alpha-3})
    check: str | None = None

    def applies_to(self, system: str) -> bool:
        if self.system is not None:
            return system == self.system
        return self.system_prefix is not None and system.startswith(self.system_prefix)


@dataclass(frozen=True)
class Weights:
    name: float
    birth_date: float
    gender: float
    phone: float
    address: float


@dataclass(frozen=True)
class MatchRules:
    keys: tuple[KeyRule, ...]
    weights: Weights
    link: float
    review: float
    auto_link_min_age_days: int
    max_candidates: int

    @cached_property
    def _exact_systems(self) -> dict[str, KeyRule]:
        return {rule.system: rule for rule in reversed(self.keys) if rule.system is not None}

    def key_rule(self, system: str) -> KeyRule | None:
        """The rule for an identifier system: an exact system, else the first prefix."""
        if (rule := self._exact_systems.get(system)) is not None:
            return rule
        return next((rule for rule in self.keys if rule.applies_to(system)), None)


def _key_rule(raw: Any, where: str) -> KeyRule:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a key must be an object")
    kind = raw.get("kind")
    if kind not in KEY_KINDS:
        raise ValueError(f"{where}: kind {kind!r} is not one of {', '.join(KEY_KINDS)}")
    system, prefix = raw.get("system"), raw.get("systemPrefix")
    if (system is None) == (prefix is None):
        raise ValueError(f"{where}: give exactly one of system and systemPrefix")
    if not isinstance(system or prefix, str) or not (system or prefix):
        raise ValueError(f"{where}: the system must be a non-empty string")
    check = raw.get("check")
    if check is not None and check not in CHECKS.get(kind, ()):
        raise ValueError(f"{where}: check {check!r} does not apply to {kind}")
    return KeyRule(kind, system, prefix, check)


def _number(data: dict[str, Any], name: str, where: str) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {name} must be a number")
    return float(value)


def parse_rules(data: Any, source: str = "matching rules") -> MatchRules:
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object")
    raw_keys = data.get("keys")
    if not isinstance(raw_keys, list) or not raw_keys:
        raise ValueError(f"{source}: keys must be a non-empty list")
    keys = tuple(_key_rule(raw, f"{source}: keys[{i}]") for i, raw in enumerate(raw_keys))

    fields = data.get("fields")
    if not isinstance(fields, dict) or set(fields) != set(FIELDS):
        raise ValueError(f"{source}: fields must give exactly {', '.join(FIELDS)}")
    values = {name: _number(fields, name, f"{source}: fields") for name in FIELDS}
    if any(v < 0 for v in values.values()):
        raise ValueError(f"{source}: field weights must not be negative")
    if not math.isclose(sum(values.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"{source}: field weights sum to {sum(values.values()):.4f}, not 1.0")
    weights = Weights(
        values["name"], values["birthDate"], values["gender"], values["phone"], values["address"]
    )

    thresholds = data.get("thresholds")
    if not isinstance(thresholds, dict):
        raise ValueError(f"{source}: thresholds must be an object with link and review")
    link = _number(thresholds, "link", f"{source}: thresholds")
    review = _number(thresholds, "review", f"{source}: thresholds")
    if not 0.0 < review <= link <= 1.0:
        raise ValueError(
            f"{source}: thresholds must satisfy 0 < review <= link <= 1 "
            f"(review {review}, link {link})"
        )
    min_age = data.get("autoLinkMinimumAgeDays", 0)
    if isinstance(min_age, bool) or not isinstance(min_age, int) or min_age < 0:
        raise ValueError(f"{source}: autoLinkMinimumAgeDays must be a whole number >= 0")
    max_candidates = data.get("maxCandidates")
    if (
        isinstance(max_candidates, bool)
        or not isinstance(max_candidates, int)
        or max_candidates < 1
    ):
        raise ValueError(f"{source}: maxCandidates must be a whole number >= 1")
    return MatchRules(keys, weights, link, review, min_age, max_candidates)


@lru_cache(maxsize=8)
def _load(path: Path) -> MatchRules:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    return parse_rules(data, str(path))


def load_rules(path: Path | None = None) -> MatchRules:
    """The rules in ``path`` (default profiles/identity/matching.json), read once per path."""
    return _load(Path(path) if path is not None else default_rules_path())
