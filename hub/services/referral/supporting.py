"""What travels with a referral: the patient's recent results and, going down, the discharge
document of the stay the patient leaves hospital from.

Both are found across every member's record of the person (the patient index), so a
township centre's up-referral carries the lab centre's results too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from adapters.feeds.config import Community
from hub.search.engine import search
from hub.services.feedback.run import file_stay
from hub.services.feedback.stays import discharge_time
from hub.services.identity import lookup
from hub.services.referral.model import instant, ref_id
from hub.services.referral.rules import ReferralRules
from hub.store.repository import read_many

DAY_US = 86_400_000_000


def _person_reference(conn: Connection, patient_id: str) -> str:
    # A master reference matches the resources of every record linked to the person.
    return f"Patient/{lookup.person_of(conn, patient_id) or patient_id}"


def recent_results(
    conn: Connection, rules: ReferralRules, patient_id: str, at: int, community: Community
) -> list[dict[str, Any]]:
    """References to the person's DiagnosticReports of the last ``resultsLookbackDays``
    before ``at``, newest first, at most ``maxResults``."""
    if rules.max_results == 0:
        return []
    tz = community.tz
    found = search(
        conn,
        "DiagnosticReport",
        [
            ("patient", _person_reference(conn, patient_id)),
            ("date", f"ge{instant(at - rules.lookback_days * DAY_US, tz)}"),
            ("date", f"le{instant(at, tz)}"),
            ("status", ",".join(sorted(rules.result_statuses))),
            ("_sort", "-date"),
            ("_count", str(rules.max_results)),
        ],
    )
    return [{"reference": f"DiagnosticReport/{res_id}"} for _, res_id, _ in found.matches]


def _latest_stay(
    conn: Connection, rules: ReferralRules, patient_id: str, hospital: str, community: Community
) -> str | None:
    """The person's most recently discharged inpatient stay at ``hospital``."""
    found = search(
        conn,
        "Encounter",
        [
            ("patient", _person_reference(conn, patient_id)),
            ("service-provider", f"Organization/{hospital}"),
            ("status", "finished"),
            ("class", ",".join(sorted(rules.stay_classes))),
            ("_sort", "-date"),
            ("_count", "50"),
        ],
    )
    stays = read_many(conn, "Encounter", [res_id for _, res_id, _ in found.matches])
    ended = [
        (end, res_id)
        for res_id, encounter in stays.items()
        if (end := discharge_time(encounter, community.tz)) is not None
    ]
    return max(ended)[1] if ended else None


def discharge_document(
    conn: Connection,
    rules: ReferralRules,
    request: dict[str, Any],
    patient_id: str,
    hospital: str,
    community: Community,
) -> dict[str, Any] | None:
    """A reference to the discharge document (Bundle type document, 出院小结) of the stay
    the referral names in ``encounter``, else of the person's latest stay at ``hospital``;
    filed now (monthly feedback's ``file_stay``) so it exists before the month's run."""
    encounter_id = ref_id(request.get("encounter"), "Encounter")
    if encounter_id is None:
        encounter_id = _latest_stay(conn, rules, patient_id, hospital, community)
    if encounter_id is None:
        return None
    document = file_stay(conn, community, encounter_id)
    if document is None:
        return None
    return {"reference": f"Bundle/{document}", "display": "出院小结 discharge summary"}


def with_supporting(request: dict[str, Any], found: list[dict[str, Any]]) -> dict[str, Any]:
    """The request with ``found`` added to its supportingInfo, the sender's entries first."""
    present = list(request.get("supportingInfo") or [])
    known = {r.get("reference") for r in present if isinstance(r, dict)}
    added = [r for r in found if r["reference"] not in known]
    if not added:
        return request
    return {**request, "supportingInfo": [*present, *added]}
