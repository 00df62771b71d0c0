"""SMART on FHIR scopes, v1 and v2, as sets of (resource type, interaction) grants.

v2: ``system/DiagnosticReport.rs``, ``system/*.cruds`` (c create, r read, u update, d delete,
s search).  v1: ``system/Observation.read`` (= rs), ``.write`` (= cud), ``.*`` (= cruds).
Only ``system/`` scopes mean anything to a backend service; ``patient/`` and ``user/`` scopes
are not granted here (no user or patient context exists for a system client).  Beyond SMART,
the community grants two of its own: ``system/sensitive.r`` to read resources labelled
sensitive, and ``hub/admin`` for the office's endpoints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INTERACTIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^system/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)(\?.*)?$")
SENSITIVE = "system/sensitive.r"
ADMIN = "hub/admin"


class ScopeError(ValueError):
    pass


@dataclass(frozen=True)
class Grants:
    """What a token's scopes allow."""

    by_type: dict[str, frozenset[str]]  # type or "*" → interaction letters
    sensitive: bool = False
    admin: bool = False

    def allows(self, res_type: str, interaction: str) -> bool:
        """``interaction``: one of c, r, u, d, s."""
        return interaction in self.by_type.get(res_type, frozenset()) or interaction in (
            self.by_type.get("*", frozenset())
        )

    def types_for(self, interaction: str) -> frozenset[str] | None:
        """Types granted ``interaction``; None means every type."""
        if interaction in self.by_type.get("*", frozenset()):
            return None
        return frozenset(t for t, acts in self.by_type.items() if interaction in acts)


def _letters(action: str) -> str:
    if action in _V1:
        return _V1[action]
    if (
        not action
        or any(c not in INTERACTIONS for c in action)
        or list(action) != sorted(set(action), key=INTERACTIONS.index)
    ):
        raise ScopeError(f"{action!r} is not a SMART v1 action or v2 permission string (cruds)")
    return action


def parse(scope: str) -> Grants:
    """Grants of a space-separated scope string; unknown scopes are an error, not ignored."""
    by_type: dict[str, set[str]] = {}
    sensitive = admin = False
    for item in scope.split():
        if item == SENSITIVE:
            sensitive = True
            continue
        if item == ADMIN:
            admin = True
            continue
        m = _SCOPE.match(item)
        if m is None:
            raise ScopeError(f"scope {item!r} is not a system/ SMART scope this hub grants")
        if m.group(3):
            # Granular v2 scopes (?category=...) would need per-query filtering: refused
            # rather than silently widened.
            raise ScopeError(f"scope {item!r}: search-restricted scopes are not supported")
        by_type.setdefault(m.group(1), set()).update(_letters(m.group(2)))
    return Grants({t: frozenset(a) for t, a in by_type.items()}, sensitive, admin)


def narrow(requested: str, allowed: str) -> str:
    """The requested scopes the client may have (a token request may ask for less)."""
    grants = parse(allowed)
    out = []
    for item in requested.split():
        if item in (SENSITIVE, ADMIN):
            if (item == SENSITIVE and grants.sensitive) or (item == ADMIN and grants.admin):
                out.append(item)
            continue
        want = parse(item)
        ok = all(
            all(grants.allows(t, a) for a in acts) if t != "*" else
            all(a in grants.by_type.get("*", frozenset()) for a in acts)
            for t, acts in want.by_type.items()
        )  # fmt: skip
        if ok:
            out.append(item)
    return " ".join(out)
