"""The master Patient of a person, built from the member records linked to it (pure).

The golden record takes its demographics from the best record (a valid resident ID first,
then the most recently written), carries every exact key of the person and the hub's own
EMPI identifier, and points at each member record: ``seealso`` for records in use, ``replaces``
for records merged away.  Member records point back with ``refer``.
"""

from __future__ import annotations

from typing import Any

from hub.services.identity.model import EMPI_SYSTEM, INVALID_IDENTIFIER, MASTER_TAG, ref

_KEY_TYPES = frozenset({"NNCHN", "HC", "MC", "PPN", "NI"})


def _valid_key_identifiers(record: dict[str, Any], key_systems: frozenset[str]) -> list[dict]:
    out = []
    for ident in record.get("identifier") or []:
        if not isinstance(ident, dict) or not ident.get("value"):
            continue
        if any(e.get("url") == INVALID_IDENTIFIER for e in ident.get("extension") or []):
            continue
        system = ident.get("system") or ""
        if system in key_systems or any(
            s.endswith("/") and system.startswith(s) for s in key_systems
        ):
            out.append({k: v for k, v in ident.items() if k in ("use", "type", "system", "value")})
    return out


def build_master(
    master_id: str,
    records: list[tuple[str, dict[str, Any], bool]],
    key_systems: frozenset[str],
) -> dict[str, Any]:
    """``records``: (record id, its Patient JSON, whether it is in use), best first."""
    in_use = [(rid, res) for rid, res, active in records if active]
    best = in_use[0][1] if in_use else (records[0][1] if records else {})
    identifiers = [{"use": "official", "system": EMPI_SYSTEM, "value": master_id}]
    seen = set()
    for _, res, _active in records:
        for ident in _valid_key_identifiers(res, key_systems):
            key = (ident.get("system"), ident["value"])
            if key not in seen:
                seen.add(key)
                identifiers.append(ident)
    master: dict[str, Any] = {
        "resourceType": "Patient",
        "id": master_id,
        "meta": {"tag": [MASTER_TAG]},
        "identifier": identifiers,
        "active": bool(in_use),
    }
    for element in ("name", "telecom", "gender", "birthDate", "address", "deceasedBoolean",
                    "deceasedDateTime", "maritalStatus"):  # fmt: skip
        if element in best:
            master[element] = best[element]
    practitioners: list[dict[str, Any]] = []
    for _, res, active in records:
        for gp in res.get("generalPractitioner") or [] if active else []:
            if gp not in practitioners:
                practitioners.append(gp)
    if practitioners:
        master["generalPractitioner"] = practitioners
    master["link"] = [
        {"other": ref(rid), "type": "seealso" if active else "replaces"}
        for rid, _, active in records
    ]
    return master


def retired_master(master_id: str, survivor_id: str) -> dict[str, Any]:
    """A master whose person turned out to be another master's: kept, inactive, pointing on."""
    return {
        "resourceType": "Patient",
        "id": master_id,
        "meta": {"tag": [MASTER_TAG]},
        "identifier": [{"use": "old", "system": EMPI_SYSTEM, "value": master_id}],
        "active": False,
        "link": [{"other": ref(survivor_id), "type": "replaced-by"}],
    }
